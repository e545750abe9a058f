"""Every attribute key spancost reads or writes, defined once.

A constant is named for its key (dots and the rest as underscores, upper case), as
in the OpenTelemetry semantic conventions' own Python package. Three kinds:

- the semantic conventions' keys: the same strings as `opentelemetry-semantic-conventions`
  (the version pinned in pyproject.toml), copied rather than imported, so that the pure
  cores load no ``opentelemetry`` package (docs/decisions.md, "One vocabulary");
  tests/test_vocabulary.py checks each against the package;
- keys the conventions do not have but senders use (the ECS task size, the providers'
  own token-count names);
- spancost's own: the ``cost.*`` attributes ``spancost.cost`` writes, and the root
  span's business transaction.

Which keys a component reads, and in which order, is its own business (e.g.
`spancost.pricing.llm.INPUT_KEYS`); only the words are here. No import of spancost.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AWS_EC2_INSTANCE_LIFECYCLE",
    "AWS_ECS_LAUNCHTYPE",
    "AWS_ECS_TASK_CPU",
    "AWS_ECS_TASK_MEMORY",
    "BUSINESS_TRANSACTION",
    "CLOUD_ACCOUNT_ID",
    "CLOUD_AVAILABILITY_ZONE",
    "CLOUD_PLATFORM",
    "CLOUD_PROVIDER",
    "CLOUD_REGION",
    "COST_CURRENCY",
    "COST_INSTANCE_TYPE",
    "COST_KEYS",
    "COST_MODEL",
    "COST_PREFIX",
    "COST_PRICE_AS_OF",
    "COST_SOURCE",
    "COST_UNPRICED_REASON",
    "COST_USD",
    "DEPLOYMENT_ENVIRONMENT",
    "DEPLOYMENT_ENVIRONMENT_NAME",
    "ENVIRONMENT_KEYS",
    "FAAS_MAX_MEMORY",
    "FAAS_TRIGGER",
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_RESPONSE_MODEL",
    "GEN_AI_SYSTEM",
    "GEN_AI_USAGE_CACHED_TOKENS",
    "GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS",
    "GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_FLAT",
    "GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS",
    "GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS_FLAT",
    "GEN_AI_USAGE_COMPLETION_TOKENS",
    "GEN_AI_USAGE_INPUT_TOKENS",
    "GEN_AI_USAGE_OUTPUT_TOKENS",
    "GEN_AI_USAGE_PREFIX",
    "GEN_AI_USAGE_PROMPT_TOKENS",
    "HOST_ARCH",
    "HOST_TYPE",
    "K8S_NAMESPACE_NAME",
    "K8S_NODE_NAME",
    "K8S_POD_UID",
    "OS_TYPE",
    "SEMCONV_KEYS",
    "SERVICE_NAME",
]

# -- the OpenTelemetry semantic conventions ---------------------------------------------

SERVICE_NAME: Final = "service.name"
DEPLOYMENT_ENVIRONMENT_NAME: Final = "deployment.environment.name"
"""The deployment environment (since semantic conventions 1.27)."""
DEPLOYMENT_ENVIRONMENT: Final = "deployment.environment"
"""The key it replaced, still sent by older SDKs: read after the current one."""
CLOUD_PROVIDER: Final = "cloud.provider"
CLOUD_PLATFORM: Final = "cloud.platform"
CLOUD_REGION: Final = "cloud.region"
CLOUD_AVAILABILITY_ZONE: Final = "cloud.availability_zone"
CLOUD_ACCOUNT_ID: Final = "cloud.account.id"
HOST_TYPE: Final = "host.type"
HOST_ARCH: Final = "host.arch"
OS_TYPE: Final = "os.type"
FAAS_MAX_MEMORY: Final = "faas.max_memory"
FAAS_TRIGGER: Final = "faas.trigger"
AWS_ECS_LAUNCHTYPE: Final = "aws.ecs.launchtype"
K8S_NODE_NAME: Final = "k8s.node.name"
K8S_POD_UID: Final = "k8s.pod.uid"
K8S_NAMESPACE_NAME: Final = "k8s.namespace.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_SYSTEM: Final = "gen_ai.system"
"""The provider's key before semantic conventions 1.37."""
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_PROMPT_TOKENS: Final = "gen_ai.usage.prompt_tokens"
"""Deprecated for ``gen_ai.usage.input_tokens``; still sent."""
GEN_AI_USAGE_COMPLETION_TOKENS: Final = "gen_ai.usage.completion_tokens"
"""Deprecated for ``gen_ai.usage.output_tokens``; still sent."""
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_PREFIX: Final = "gen_ai.usage."
"""What every token count's key starts with (those below too)."""

SEMCONV_KEYS: Final = (
    SERVICE_NAME,
    DEPLOYMENT_ENVIRONMENT_NAME,
    DEPLOYMENT_ENVIRONMENT,
    CLOUD_PROVIDER,
    CLOUD_PLATFORM,
    CLOUD_REGION,
    CLOUD_AVAILABILITY_ZONE,
    CLOUD_ACCOUNT_ID,
    HOST_TYPE,
    HOST_ARCH,
    OS_TYPE,
    FAAS_MAX_MEMORY,
    FAAS_TRIGGER,
    AWS_ECS_LAUNCHTYPE,
    K8S_NODE_NAME,
    K8S_POD_UID,
    K8S_NAMESPACE_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_SYSTEM,
    GEN_AI_OPERATION_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    GEN_AI_USAGE_PROMPT_TOKENS,
    GEN_AI_USAGE_COMPLETION_TOKENS,
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
)
"""The keys above, each the same string as the semantic conventions' constant of its name."""

ENVIRONMENT_KEYS: Final = (DEPLOYMENT_ENVIRONMENT_NAME, DEPLOYMENT_ENVIRONMENT)
"""Where the deployment environment is read, first present wins."""

# -- not in the semantic conventions, but sent ------------------------------------------

AWS_ECS_TASK_CPU: Final = "aws.ecs.task.cpu"
"""A task's CPU units or vCPUs (Fargate; node facts take it from the task metadata)."""
AWS_ECS_TASK_MEMORY: Final = "aws.ecs.task.memory"
"""A task's memory in MiB or GB (Fargate; node facts take it from the task metadata)."""
AWS_EC2_INSTANCE_LIFECYCLE: Final = "aws.ec2.instance.lifecycle"
"""The default of ``spot.attribute``: ``spot`` marks a spot instance."""
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS_FLAT: Final = "gen_ai.usage.cache_read_input_tokens"
"""Cached input tokens under the Anthropic API's own field name."""
GEN_AI_USAGE_CACHED_TOKENS: Final = "gen_ai.usage.cached_tokens"
"""Cached input tokens under the OpenAI API's own field name."""
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_FLAT: Final = "gen_ai.usage.cache_creation_input_tokens"
"""Cache-write input tokens under the Anthropic API's own field name."""

# -- spancost's own -----------------------------------------------------------------------

COST_USD: Final = "cost.usd"
COST_CURRENCY: Final = "cost.currency"
COST_SOURCE: Final = "cost.source"
COST_MODEL: Final = "cost.model"
COST_PRICE_AS_OF: Final = "cost.price_as_of"
COST_INSTANCE_TYPE: Final = "cost.instance_type"
COST_UNPRICED_REASON: Final = "cost.unpriced_reason"
COST_KEYS: Final = (
    COST_USD,
    COST_CURRENCY,
    COST_SOURCE,
    COST_MODEL,
    COST_PRICE_AS_OF,
    COST_INSTANCE_TYPE,
    COST_UNPRICED_REASON,
)
"""What ``spancost.cost`` writes on a span, and removes from incoming ones (its ownership)."""
COST_PREFIX: Final = "cost."
"""What every key above starts with."""
BUSINESS_TRANSACTION: Final = "business.transaction"
"""The root span's transaction name: the default of the totals' ``transaction.attribute``."""
