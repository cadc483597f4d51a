"""The InferenceDeployment OpenAPI v3 schema, built from small helpers so every field has a description.

Defaults come from resource.py, so the schema and the parser agree. Cross-field checks are CEL rules
(`x-kubernetes-validations`) whose messages name the fields involved; lists and strings carry bounds so
the API server's CEL cost estimate stays small.
"""

from __future__ import annotations

from tokenfleet_operator import resource as r
from tokenfleet_operator.crd_autoscaling import autoscaling_schema
from tokenfleet_operator.crd_fields import (
    DNS_LABEL,
    QUALIFIED_NAME,
    Schema,
    enum,
    integer,
    number,
    obj,
    rule,
    string,
)

MAX_ACCELERATORS = 8


def model_schema() -> Schema:
    return obj(
        "The model every worker serves.",
        {
            "name": string(
                "Model name clients put in the OpenAI `model` field.", pattern=DNS_LABEL, maxLength=63
            ),
            "uri": string(
                "Where workers load weights from, with a scheme: pvc://claim/path, hf://org/name, file:///path.",
                pattern=r"^[a-z][a-z0-9+.-]*://.+",
                maxLength=512,
            ),
            "dtype": enum("Weight and activation dtype.", r.DTYPES, r.DEFAULT_DTYPE),
            "maxModelLen": integer(
                "Longest prompt + output in tokens; default: the model's own limit.", 16, 1048576
            ),
        },
        required=("name", "uri"),
    )


def engine_schema() -> Schema:
    return obj(
        "The decode engine inside each worker.",
        {
            "backend": enum(
                "torch runs the model; sim is the calibrated simulator.", r.BACKENDS, r.DEFAULT_BACKEND
            ),
            "maxNumSeqs": integer(
                "Most sequences in one running batch.", 1, 4096, default=r.DEFAULT_MAX_NUM_SEQS
            ),
            "maxBatchedTokens": integer(
                "Token budget of one engine step (chunked prefill).",
                1,
                1048576,
                default=r.DEFAULT_MAX_BATCHED_TOKENS,
            ),
            "decodeStepTargetMs": number(
                "Target milliseconds of an engine step that carries decodes, i.e. the time per output "
                "token to hold while prompts are prefilled: each worker learns its step time and cuts "
                "prefill chunks to keep it (slower accelerators cut more). Unset: chunks fill "
                "maxBatchedTokens.",
                minimum=1,
                maximum=60000,
            ),
            "schedulingPolicy": enum(
                "Order in which a worker admits waiting requests: fcfs (first come, first served) or "
                "shortest-prompt-first, which keeps short requests within the TTFT target through "
                "bursts; a request is never passed over by one that arrived more than its prompt "
                "tokens / 250 seconds after it.",
                r.SCHEDULING_POLICIES,
                r.DEFAULT_SCHEDULING_POLICY,
            ),
            "blockSize": enum("Tokens per KV-cache block.", r.BLOCK_SIZES, r.DEFAULT_BLOCK_SIZE),
            "prefixCaching": {
                "type": "boolean",
                "description": "Reuse KV blocks of shared prefixes.",
                "default": True,
            },
            "drainTimeoutSeconds": integer(
                "How long a terminating worker may spend finishing in-flight requests.",
                0,
                3600,
                default=r.DEFAULT_DRAIN_TIMEOUT_SECONDS,
            ),
        },
        default={},
        validations=[
            rule(
                "!has(self.maxBatchedTokens) || !has(self.maxNumSeqs)"
                " || self.maxBatchedTokens >= self.maxNumSeqs",
                "spec.engine.maxBatchedTokens must be at least spec.engine.maxNumSeqs",
                ".maxBatchedTokens",
            )
        ],
    )


def accelerator_schema() -> Schema:
    return obj(
        "One hardware variant; each gets its own worker Deployment.",
        {
            "name": string("Variant name, used in child object names.", pattern=DNS_LABEL, maxLength=15),
            "resourceName": string(
                "Extended resource requested per pod.",
                pattern=QUALIFIED_NAME,
                maxLength=253,
                default=r.DEFAULT_RESOURCE_NAME,
            ),
            "count": integer("Accelerators per worker pod.", 1, 16, default=1),
            "hourlyCost": number(
                "Cost of one worker pod per hour, in any currency.", minimum=0, maximum=10000
            ),
            "maxReplicas": integer("Most worker pods of this variant.", 0, 10000),
            "tokensPerSecond": number(
                "Tokens a second one worker pod processes at full load, as benchmarked (`tokenfleet bench "
                "engine` on this hardware). Ranks the variant by cost per token until its pods have been "
                "measured; without it an unmeasured variant is assumed as fast as the measured ones.",
                minimum=0,
                exclusiveMinimum=True,
                maximum=1e9,
            ),
            "device": enum("Device the worker computes on; cpu for development fleets.", r.DEVICES, "cuda"),
            "nodeSelector": {
                "type": "object",
                "description": "Node labels a worker pod of this variant must match.",
                "additionalProperties": {"type": "string", "maxLength": 63},
                "maxProperties": 16,
            },
        },
        required=("name", "hourlyCost"),
    )


def accelerators_schema() -> Schema:
    return {
        "type": "array",
        "description": "Hardware variants the autoscaler mixes by cost per token; at least one.",
        "minItems": 1,
        "maxItems": MAX_ACCELERATORS,
        "items": accelerator_schema(),
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "x-kubernetes-validations": [
            rule(
                "self.all(a, self.filter(b, b.name == a.name).size() == 1)",
                "spec.accelerators[].name must be unique",
            )
        ],
    }


def routing_schema() -> Schema:
    return obj(
        "The router in front of the workers.",
        {
            "strategy": enum(
                "How the router picks a worker.", r.ROUTING_STRATEGIES, r.DEFAULT_ROUTING_STRATEGY
            ),
            "replicas": integer("Router pods.", 1, 100, default=r.DEFAULT_ROUTER_REPLICAS),
            "sessionHeader": string(
                "Request header whose value pins a session to a worker.",
                maxLength=128,
                pattern=r"^[A-Za-z0-9-]+$",
                default=r.DEFAULT_SESSION_HEADER,
            ),
            "apiKeysSecret": string(
                "Secret in this namespace whose `api-keys` file (one key per line) the router requires as"
                " Bearer tokens on /v1/*. Unset: no API keys.",
                maxLength=253,
                pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
            ),
        },
        default={},
    )


def spec_schema() -> Schema:
    validations = [
        rule(
            "!has(self.replicas) || self.autoscaling.mode == 'builtin'"
            " || self.replicas <= self.autoscaling.maxReplicas",
            "spec.replicas must be at most spec.autoscaling.maxReplicas (modes external and off)",
            ".replicas",
        ),
        rule(
            "!has(self.autoscaling.budget.maxHourlyCost) || self.accelerators.exists(a, "
            "a.hourlyCost * double(self.autoscaling.minReplicas) <= self.autoscaling.budget.maxHourlyCost)",
            "spec.autoscaling.budget.maxHourlyCost cannot pay for spec.autoscaling.minReplicas "
            "on any accelerator",
            ".autoscaling.budget.maxHourlyCost",
        ),
    ]
    return obj(
        "Desired state of a fleet of LLM inference workers.",
        {
            "model": model_schema(),
            "engine": engine_schema(),
            "accelerators": accelerators_schema(),
            "autoscaling": autoscaling_schema(),
            "routing": routing_schema(),
            "replicas": integer(
                "Worker replicas over all variants (the scale subresource). Written by the operator in mode "
                "builtin, by HPA/KEDA in mode external, by hand (kubectl scale) in mode off.",
                0,
                10000,
                default=r.DEFAULT_REPLICAS,
            ),
        },
        required=("model", "accelerators"),
        validations=validations,
    )
