"""The launcher command line of each shipped deployment, as it ships: `make
serve` (the Makefile's recipe), the container (docker/Dockerfile's CMD),
Kubernetes (deploy/kubernetes/base, rendered by kustomize) and KServe
(deploy/kubernetes/kserve), with the environment each gives it."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field

import yaml

from runtime.paths import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy" / "kubernetes"
KUBECTL = shutil.which("kubectl")
LAUNCHER = ["-m", "runtime.server"]


@dataclass
class Deployment:
    name: str
    args: list[str]
    """The launcher's arguments (what follows `python -m runtime.server`)."""
    env: dict[str, str] = field(default_factory=dict)
    container: dict | None = None
    pod: dict | None = None


def render(folder: str) -> list[dict]:
    done = subprocess.run([KUBECTL, "kustomize", str(DEPLOY / folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, (kind, [d["kind"] for d in docs])
    return found[0]


def substitute(args: list[str], env: dict[str, str]) -> list[str]:
    """$(VAR) references expanded as Kubernetes does."""
    for arg in args:
        for name in re.findall(r"\$\((\w+)\)", arg):
            assert name in env, f"{arg}: ${name} has no env entry"
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in args]


def container_env(container: dict, docs: list[dict]) -> dict[str, str]:
    """The container's environment as Kubernetes would resolve it (an
    optional key that no Secret holds is left out)."""
    sources = {(d["kind"], d["metadata"]["name"]): d.get("data") or d.get("stringData") or {} for d in docs if d["kind"] in ("ConfigMap", "Secret")}
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]
        kind, key = ("ConfigMap", "configMapKeyRef") if "configMapKeyRef" in ref else ("Secret", "secretKeyRef")
        source = sources.get((kind, ref[key]["name"]))
        if source is None or ref[key]["key"] not in source:
            assert ref[key].get("optional"), (item["name"], ref)
            continue
        env[item["name"]] = source[ref[key]["key"]]
    return env


def launcher_args(command: list[str]) -> list[str]:
    """The arguments after `python -m runtime.server`; fails on another command."""
    assert command[1:3] == LAUNCHER and command[0].split("/")[-1].startswith("python"), f"not the launcher: {command}"
    return command[3:]


def make_serve() -> Deployment:
    done = subprocess.run(["make", "-n", "--no-print-directory", "serve"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    recipe = done.stdout.replace("\\\n", " ")
    line = next(line for line in recipe.splitlines() if " -m runtime.server" in line)
    return Deployment("make serve", launcher_args(shlex.split(line)))


def docker() -> Deployment:
    text = (REPO_ROOT / "docker" / "Dockerfile").read_text()
    command = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    env = dict(re.findall(r"^ENV (\w+)=(\S+)$", text, re.M))
    return Deployment("docker", launcher_args(command), env)


def kubernetes(folder: str) -> Deployment:
    docs = render(folder)
    if folder == "kserve":
        (container,) = one(docs, "ServingRuntime")["spec"]["containers"]
        pod = one(docs, "InferenceService")["spec"]["predictor"]
    else:
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        (container,) = pod["containers"]
    env = container_env(container, docs)
    return Deployment(folder, launcher_args(container["command"] + substitute(container["args"], env)), env, container, pod)


def shipped() -> list[Deployment]:
    found = [make_serve(), docker()]
    if KUBECTL:
        found += [kubernetes("base"), kubernetes("kserve")]
    return found


def flag(args: list[str], name: str) -> str | None:
    """The value of --name=value or --name value in args."""
    for index, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and index + 1 < len(args):
            return args[index + 1]
    return None


def with_flags(args: list[str], **values: str) -> list[str]:
    """args with --name replaced by (or given) the value; the rest kept as shipped."""
    kept, skip = [], False
    names = {f"--{name.replace('_', '-')}" for name in values}
    for arg in args:
        if skip:
            skip = False
            continue
        head = arg.split("=", 1)[0]
        if head in names:
            skip = "=" not in arg
            continue
        kept.append(arg)
    return kept + [f"--{name.replace('_', '-')}={value}" for name, value in values.items()]
