"""How long a request may take, derived from the models' configurations
(Triton's JSON form, as the model-config API gives it).

- A model's *execution bound*: how long one piece of its work (an execute, a
  streamed request) may run in its stub before the watchdog takes the stub
  for hung: the parameter `execution_bound_s` where a config sets one, else
  EXECUTE_BASE_S, plus, for a Python model (whose execute may wait on BLS
  calls), its BLS timeout (`bls_timeout_microseconds`, default two minutes).
- A model's *request bound*: the longest a request to it may take before it
  is answered or refused: its queue timeout plus its execution bound; for an
  ensemble, the sum over its steps."""

from __future__ import annotations

from pipelines.serving.bls import DEFAULT_TIMEOUT_MICROSECONDS

EXECUTE_BASE_S = 60.0
"""One execute of any model here takes seconds at most on two busy cores (an
OCR page's detector batch is the longest); a minute leaves a wide margin."""
BOUND_PARAMETER = "execution_bound_s"


def parameter(config: dict, key: str) -> str | None:
    value = (config.get("parameters") or {}).get(key)
    return value.get("string_value") if isinstance(value, dict) else None


def queue_timeout_s(config: dict) -> float:
    """The default queue timeout of the model's dynamic batcher (0: none)."""
    policy = (config.get("dynamic_batching") or {}).get("default_queue_policy") or {}
    return float(policy.get("default_timeout_microseconds") or 0) / 1e6


def is_ensemble(config: dict) -> bool:
    return config.get("platform") == "ensemble"


def execution_bound_s(config: dict) -> float:
    explicit = parameter(config, BOUND_PARAMETER)
    if explicit:
        return float(explicit)
    bound = EXECUTE_BASE_S
    if config.get("backend") == "python":
        bound += float(parameter(config, "bls_timeout_microseconds") or DEFAULT_TIMEOUT_MICROSECONDS) / 1e6
    return bound


def request_bound_s(model: str, configs: dict[str, dict]) -> float:
    config = configs[model]
    if is_ensemble(config):
        return sum(request_bound_s(step["model_name"], configs) for step in config["ensemble_scheduling"]["step"])
    return queue_timeout_s(config) + execution_bound_s(config)
