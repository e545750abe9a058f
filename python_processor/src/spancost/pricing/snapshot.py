"""The bundled price snapshot: AWS prices shipped with spancost, read once, queried from memory.

``data/aws_prices.json`` (format 1)::

    {
      "format": 1,
      "currency": "USD",
      "as_of": "2025-01-01",                 # when the prices were valid (cost.price_as_of)
      "provenance": "where they come from",
      "ec2":     {"Linux": {"us-east-1": {"m5.large": 0.096, ...}, ...}, ...},   # USD per hour
      "lambda":  {"us-east-1": {"x86_64": {"gb_second": 1.66667e-05, "request": 2e-07},
                                "arm64": {...}}, ...},
      "fargate": {"us-east-1": {"x86_64": {"vcpu_hour": 0.04048, "gb_hour": 0.004445},
                                "arm64": {...}}, ...}
    }

EC2 prices are on-demand, shared tenancy, no pre-installed software, keyed by
operating system as in `Ec2Key` (``Linux``, ``Windows``, ``RHEL``, ``SUSE``).
Every price is a JSON number; a snapshot with a price that is not a finite,
non-negative number is refused as a whole (`SnapshotError`). Another file in
the same format (e.g. one written by ``spancost prices refresh``) can replace
the bundled one: ``prices.bundled.path`` in the plugin's configuration.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Final, cast

from spancost.errors import SpancostError
from spancost.pricing.model import ARCHES, Arch, Ec2Key, FargatePrice, LambdaPrice, Price

__all__ = [
    "SNAPSHOT_FORMAT",
    "SOURCE_NAME",
    "BundledPrices",
    "SnapshotError",
    "load_bundled",
    "load_snapshot",
]

SNAPSHOT_FORMAT: Final = 1
SOURCE_NAME: Final = "bundled"
_PACKAGE_FILE: Final = "aws_prices.json"


class SnapshotError(SpancostError):
    """A price snapshot file is missing, unreadable or malformed."""


class BundledPrices:
    """A `PriceSource` over a snapshot held in memory (dict lookups, no I/O)."""

    name = SOURCE_NAME
    ready = True

    def __init__(
        self,
        *,
        ec2: Mapping[Ec2Key, float],
        lambda_: Mapping[tuple[str, Arch], tuple[float, float]],
        fargate: Mapping[tuple[str, Arch], tuple[float, float]],
        as_of: str,
        provenance: str = "",
        name: str = SOURCE_NAME,
    ) -> None:
        """Prices per key: EC2 USD/hour; Lambda (GB-second, request); Fargate (vCPU-h, GB-h)."""
        self.name = name
        self.as_of = as_of
        self.provenance = provenance
        self._ec2 = {key: Price(float(usd), "hour", name, as_of) for key, usd in ec2.items()}
        self._lambda = {
            key: LambdaPrice(
                gb_second=Price(float(gb_s), "gb_second", name, as_of),
                request=Price(float(request), "request", name, as_of),
            )
            for key, (gb_s, request) in lambda_.items()
        }
        self._fargate = {
            key: FargatePrice(
                vcpu_hour=Price(float(vcpu), "vcpu_hour", name, as_of),
                gb_hour=Price(float(gb), "gb_hour", name, as_of),
            )
            for key, (vcpu, gb) in fargate.items()
        }
        self._regions = frozenset(
            [k.region for k in self._ec2]
            + [r for r, _ in self._lambda]
            + [r for r, _ in self._fargate]
        )

    def ec2(self, key: Ec2Key) -> Price | None:
        return self._ec2.get(key)

    def lambda_(self, region: str, arch: Arch) -> LambdaPrice | None:
        return self._lambda.get((region, arch))

    def fargate(self, region: str, arch: Arch) -> FargatePrice | None:
        return self._fargate.get((region, arch))

    def knows_region(self, region: str) -> bool:
        return region in self._regions

    @property
    def regions(self) -> frozenset[str]:
        """Every region the snapshot has at least one price for."""
        return self._regions

    def ec2_keys(self) -> list[Ec2Key]:
        """Every EC2 key the snapshot prices."""
        return list(self._ec2)

    def to_document(self) -> dict[str, Any]:
        """The snapshot in file format 1 (the inverse of `from_document`)."""
        ec2: dict[str, dict[str, dict[str, float]]] = {}
        for key, price in sorted(self._ec2.items(), key=lambda kv: _ec2_sort_key(kv[0])):
            regions = ec2.setdefault(key.operating_system, {})
            regions.setdefault(key.region, {})[key.instance_type] = price.usd
        lambda_: dict[str, dict[str, dict[str, float]]] = {}
        for (region, arch), lp in sorted(self._lambda.items()):
            lambda_.setdefault(region, {})[arch] = {
                "gb_second": lp.gb_second.usd,
                "request": lp.request.usd,
            }
        fargate: dict[str, dict[str, dict[str, float]]] = {}
        for (region, arch), fp in sorted(self._fargate.items()):
            fargate.setdefault(region, {})[arch] = {
                "vcpu_hour": fp.vcpu_hour.usd,
                "gb_hour": fp.gb_hour.usd,
            }
        return {
            "format": SNAPSHOT_FORMAT,
            "currency": "USD",
            "as_of": self.as_of,
            "provenance": self.provenance,
            "ec2": ec2,
            "lambda": lambda_,
            "fargate": fargate,
        }

    @classmethod
    def from_document(cls, document: object, origin: str = "snapshot") -> BundledPrices:
        """Validate a parsed snapshot; `SnapshotError` names the offending path."""
        doc = _mapping(document, origin)
        if doc.get("format") != SNAPSHOT_FORMAT:
            raise SnapshotError(
                f"{origin}: format must be {SNAPSHOT_FORMAT}, got {doc.get('format')!r}"
            )
        if doc.get("currency", "USD") != "USD":
            raise SnapshotError(f"{origin}: currency must be USD, got {doc.get('currency')!r}")
        as_of = doc.get("as_of")
        if not isinstance(as_of, str) or not as_of.strip():
            raise SnapshotError(f"{origin}: as_of must be a non-empty string")
        provenance = doc.get("provenance", "")
        if not isinstance(provenance, str):
            raise SnapshotError(f"{origin}: provenance must be a string")

        ec2: dict[Ec2Key, float] = {}
        for os_name, regions in _mapping(doc.get("ec2", {}), f"{origin}.ec2").items():
            os_path = f"{origin}.ec2.{os_name}"
            for region, types in _mapping(regions, os_path).items():
                for instance_type, usd in _mapping(types, f"{os_path}.{region}").items():
                    path = f"{os_path}.{region}.{instance_type}"
                    ec2[Ec2Key(region, instance_type, os_name)] = _price(usd, path)

        lambda_ = _per_arch(doc.get("lambda", {}), f"{origin}.lambda", ("gb_second", "request"))
        fargate = _per_arch(doc.get("fargate", {}), f"{origin}.fargate", ("vcpu_hour", "gb_hour"))
        return cls(
            ec2=ec2,
            lambda_=lambda_,
            fargate=fargate,
            as_of=as_of.strip(),
            provenance=provenance,
        )


def load_snapshot(path: str | Path) -> BundledPrices:
    """Read a snapshot file (format 1); `SnapshotError` if unreadable or malformed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SnapshotError(f"cannot read price snapshot {path}: {exc.strerror or exc}") from exc
    return _parse(text, str(path))


@functools.cache
def load_bundled() -> BundledPrices:
    """The snapshot shipped in ``spancost/pricing/data`` (read once per process)."""
    try:
        text = (
            resources.files("spancost.pricing").joinpath("data", _PACKAGE_FILE).read_text("utf-8")
        )
    except OSError as exc:
        raise SnapshotError(f"the bundled price snapshot is missing: {exc}") from exc
    return _parse(text, _PACKAGE_FILE)


def _parse(text: str, origin: str) -> BundledPrices:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise SnapshotError(f"{origin}: not valid JSON: {exc}") from exc
    return BundledPrices.from_document(document, origin)


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise SnapshotError(f"{path}: must be a JSON object")
    return cast(Mapping[str, Any], value)


def _price(value: object, path: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise SnapshotError(f"{path}: must be a finite number >= 0, got {value!r}")
    return float(value)


def _per_arch(
    value: object, path: str, fields: tuple[str, str]
) -> dict[tuple[str, Arch], tuple[float, float]]:
    out: dict[tuple[str, Arch], tuple[float, float]] = {}
    for region, arches in _mapping(value, path).items():
        for arch, prices in _mapping(arches, f"{path}.{region}").items():
            arch_path = f"{path}.{region}.{arch}"
            if arch not in ARCHES:
                raise SnapshotError(f"{arch_path}: architecture must be one of {', '.join(ARCHES)}")
            table = _mapping(prices, arch_path)
            first, second = (_price(table.get(name), f"{arch_path}.{name}") for name in fields)
            out[(region, arch)] = (first, second)
    return out


def _ec2_sort_key(key: Ec2Key) -> tuple[str, str, str]:
    return (key.operating_system, key.region, key.instance_type)
