"""`spancost prices show|refresh`, against the bundled snapshot and the fake Price List API."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from spancost.cli import cli
from spancost.cli import prices as cli_module
from spancost.pricing.model import Ec2Key
from spancost.pricing.snapshot import load_bundled, load_snapshot
from tests.fake_pricelist import (
    FakePriceList,
    ec2_product,
    fargate_products,
    lambda_products,
    offline_aws_env,
    serve,
)

PRODUCTS = [
    ec2_product("t3.xlarge", "us-east-1", 0.1664),
    ec2_product("t3.xlarge", "us-east-1", 0.3, operating_system="Windows"),
    ec2_product("m5.large", "us-east-1", 0.096),
    ec2_product("m5.large", "eu-west-1", 0.107),
    ec2_product("c5.large", "eu-west-1", 0.096, effective_date="2024-07-01T00:00:00Z"),
    *lambda_products("us-east-1"),
    *fargate_products("us-east-1"),
]

# A small snapshot to refresh: what it lists is what gets fetched.
SNAPSHOT = {
    "format": 1,
    "currency": "USD",
    "as_of": "2020-01-01",
    "provenance": "test",
    "ec2": {
        "Linux": {
            "us-east-1": {"t3.xlarge": 0.1, "m5.large": 0.1, "x9.gone": 1.0},
            "eu-west-1": {"m5.large": 0.1},
        }
    },
    "lambda": {"us-east-1": {"x86_64": {"gb_second": 1e-05, "request": 1e-07}}},
    "fargate": {"us-east-1": {"arm64": {"vcpu_hour": 0.01, "gb_hour": 0.001}}},
}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePriceList]:
    offline_aws_env(monkeypatch)
    with serve(PRODUCTS, page_size=2) as server:
        yield server


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """`spancost prices` configures the root logger; give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def snapshot_file(tmp_path: Path) -> Path:
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(SNAPSHOT))
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, ["prices", *args], catch_exceptions=False)


# -- show -------------------------------------------------------------------------------------


def test_show_from_the_bundled_snapshot() -> None:
    expected = load_bundled().ec2(Ec2Key("us-east-1", "t3.xlarge"))
    assert expected is not None
    result = invoke("show", "t3.xlarge", "--region", "us-east-1")
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"t3.xlarge (Linux) in us-east-1: {expected.usd:g} USD per hour "
        f"(source bundled, as of {expected.as_of})\n"
    )


def test_show_json() -> None:
    expected = load_bundled().ec2(Ec2Key("us-east-1", "t3.xlarge"))
    assert expected is not None
    result = invoke("show", "t3.xlarge", "--region", "us-east-1", "--os", "linux", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "instance_type": "t3.xlarge",
        "region": "us-east-1",
        "operating_system": "Linux",
        "usd": expected.usd,
        "unit": "hour",
        "currency": "USD",
        "source": "bundled",
        "as_of": expected.as_of,
    }


def test_show_from_another_snapshot_file(snapshot_file: Path) -> None:
    result = invoke("show", "m5.large", "--region", "eu-west-1", "--snapshot", str(snapshot_file))
    assert result.exit_code == 0, result.output
    assert "0.1 USD per hour (source bundled, as of 2020-01-01)" in result.output


def test_show_unknown_is_a_failure_not_a_traceback() -> None:
    result = invoke("show", "x9.nonexistent", "--region", "us-east-1")
    assert result.exit_code == 1
    assert "Error: no price for x9.nonexistent (Linux) in us-east-1" in result.output
    assert "--live" in result.output


def test_show_a_broken_snapshot_file_fails(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    result = invoke("show", "m5.large", "--region", "us-east-1", "--snapshot", str(broken))
    assert result.exit_code == 1
    assert "Error:" in result.output
    assert "not valid JSON" in result.output


def test_show_live(fake: FakePriceList) -> None:
    result = invoke(
        "show", "t3.xlarge", "--region", "us-east-1", "--os", "Windows", "--live",
        "--endpoint-url", fake.url, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert (answer["usd"], answer["source"], answer["as_of"]) == (
        0.3,
        "aws_pricelist",
        "2024-06-01",
    )
    (request,) = fake.get_products_requests()
    assert request.filters()["operatingSystem"] == "Windows"


def test_show_live_survives_throttling(fake: FakePriceList) -> None:
    fake.throttle_next(1)
    result = invoke(
        "show", "m5.large", "--region", "eu-west-1", "--live", "--endpoint-url", fake.url
    )
    assert result.exit_code == 0, result.output
    assert "0.107 USD per hour (source aws_pricelist, as of 2024-06-01)" in result.output
    assert len(fake.get_products_requests()) == 2


def test_show_live_api_down_fails_cleanly(fake: FakePriceList) -> None:
    fake.stop()
    result = invoke(
        "show", "m5.large", "--region", "eu-west-1", "--live", "--endpoint-url", fake.url
    )
    assert result.exit_code == 1
    assert "Error: GetProducts AmazonEC2" in result.output
    assert "Traceback" not in result.output


def test_show_live_unknown(fake: FakePriceList) -> None:
    result = invoke(
        "show", "m5.large", "--region", "ap-south-1", "--live", "--endpoint-url", fake.url
    )
    assert result.exit_code == 1
    assert "no price for m5.large (Linux) in ap-south-1 in the AWS Price List API" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["show", "t3.xlarge"],  # --region missing
        ["show", "t3.xlarge", "--region", "moon"],
        ["show", "t3", "--region", "us-east-1"],
        ["show", "t3.xlarge", "--region", "us-east-1", "--os", "BeOS"],
        ["show", "t3.xlarge", "--region", "us-east-1", "--endpoint-url", "http://127.0.0.1:1"],
        ["show", "t3.xlarge", "--region", "us-east-1", "--live", "--endpoint-url", "ftp://x"],
        ["show", "t3.xlarge", "--region", "us-east-1", "--live", "--endpoint-region", "eu-west-1"],
        ["show", "t3.xlarge", "--region", "us-east-1", "--live", "--snapshot", "x.json"],
        ["refresh", "--regions", "us-east-1,nowhere"],
        ["refresh", "--workers", "0"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output


# -- refresh ---------------------------------------------------------------------------------


def test_refresh_writes_the_snapshot_format(
    fake: FakePriceList, snapshot_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out" / "aws_prices.json"
    result = invoke(
        "refresh", "--snapshot", str(snapshot_file), "--output", str(output),
        "--endpoint-url", fake.url,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    refreshed = load_snapshot(output)  # the other half's loader reads it
    today = f"{dt.datetime.now(dt.UTC):%Y-%m-%d}"
    assert refreshed.as_of == today
    assert "AWS Price List Query API" in refreshed.provenance
    assert "2024-06-01 to 2024-06-01" not in refreshed.provenance  # several effective dates
    document: dict[str, Any] = json.loads(output.read_text())
    assert document["ec2"] == {
        "Linux": {
            "eu-west-1": {"m5.large": 0.107},
            "us-east-1": {"m5.large": 0.096, "t3.xlarge": 0.1664},
        }
    }
    assert document["lambda"] == {
        "us-east-1": {
            "arm64": {"gb_second": 0.0000133334, "request": 0.0000002},
            "x86_64": {"gb_second": 0.0000166667, "request": 0.0000002},
        }
    }
    assert document["fargate"]["us-east-1"]["x86_64"] == {"vcpu_hour": 0.04048, "gb_hour": 0.004445}
    price = refreshed.ec2(Ec2Key("us-east-1", "t3.xlarge"))
    assert price is not None
    assert (price.usd, price.source, price.as_of) == (0.1664, "bundled", today)
    assert "3 EC2, 2 Lambda and 2 Fargate prices" in result.output
    assert (
        "no price for 1 of the snapshot's keys, left out: EC2 x9.gone (Linux) in us-east-1"
        in result.output
    )
    # One query per region and OS, not one per instance type; all of them paginated.
    ec2_requests = [r for r in fake.get_products_requests() if r.body["ServiceCode"] == "AmazonEC2"]
    assert sorted(r.filters()["regionCode"] for r in ec2_requests if "NextToken" not in r.body) == [
        "eu-west-1",
        "us-east-1",
    ]
    assert all("instanceType" not in r.filters() for r in ec2_requests)


def test_refresh_to_stdout_for_chosen_regions(fake: FakePriceList, snapshot_file: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["prices", "refresh", "--snapshot", str(snapshot_file), "--output", "-",
         "--regions", "eu-west-1", "--endpoint-url", fake.url],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    # eu-west-1 keeps its instance type list; Lambda and Fargate have no eu-west-1 prices here.
    assert document["ec2"] == {"Linux": {"eu-west-1": {"m5.large": 0.107}}}
    assert document["lambda"] == {}
    assert "Lambda (x86_64) in eu-west-1" in result.stderr


def test_refresh_a_new_region_gets_every_known_instance_type(
    fake: FakePriceList, snapshot_file: Path
) -> None:
    fake.products.append(ec2_product("t3.xlarge", "ap-south-1", 0.1792))
    result = invoke(
        "refresh", "--snapshot", str(snapshot_file), "--output", "-",
        "--regions", "ap-south-1", "--endpoint-url", fake.url,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ec2"] == {"Linux": {"ap-south-1": {"t3.xlarge": 0.1792}}}


def test_refresh_fails_whole_and_writes_nothing(
    fake: FakePriceList, snapshot_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "aws_prices.json"
    output.write_text("previous")
    fake.server_error_next(100, 500)
    result = invoke(
        "refresh", "--snapshot", str(snapshot_file), "--output", str(output),
        "--endpoint-url", fake.url, "--workers", "1",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "Error: GetProducts" in result.output
    assert output.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["aws_prices.json", "snapshot.json"]


def test_refresh_with_no_price_at_all_writes_nothing(
    fake: FakePriceList, snapshot_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "aws_prices.json"
    result = invoke(
        "refresh", "--snapshot", str(snapshot_file), "--output", str(output),
        "--regions", "sa-east-1", "--endpoint-url", fake.url,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "answered no price at all; nothing written" in result.output
    assert not output.exists()


def test_refresh_defaults_to_the_bundled_file(
    fake: FakePriceList, snapshot_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = tmp_path / "data" / "aws_prices.json"
    monkeypatch.setattr(cli_module, "_bundled_snapshot_path", lambda: bundled)
    result = invoke("refresh", "--snapshot", str(snapshot_file), "--endpoint-url", fake.url)
    assert result.exit_code == 0, result.output
    assert load_snapshot(bundled).ec2(Ec2Key("eu-west-1", "m5.large")) is not None


# -- as a process: exit codes, no traceback ------------------------------------------------------


def test_subprocess_exit_codes(fake: FakePriceList) -> None:
    env = dict(os.environ)
    command = [
        sys.executable,
        "-m",
        "spancost",
        "prices",
        "show",
        "t3.xlarge",
        "--region",
        "us-east-1",
    ]
    ok = subprocess.run(
        [*command, "--live", "--endpoint-url", fake.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "0.1664 USD per hour (source aws_pricelist, as of 2024-06-01)" in ok.stdout
    fake.stop()
    down = subprocess.run(
        [*command, "--live", "--endpoint-url", fake.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert down.returncode == 1
    assert down.stderr.startswith("Error: GetProducts AmazonEC2")
    assert "Traceback" not in down.stderr
    usage = subprocess.run(
        [*command[:-2]], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert usage.returncode == 2
