"""Build the control plane's binaries from their Go modules, through the Go module proxy.

k8s.io/kubernetes and etcd's server use relative `replace` directives, so `go install` refuses
them. Each component is built from a small generated wrapper module instead, which pins every
staging module to its published version; the version is stamped through ldflags so
`kubectl version` and Helm see the real one. Binaries land in a cache folder outside the repo
and are reused when present.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tokenfleet_devkit.cluster import versions as v

Say = Callable[[str], None]


@dataclass(frozen=True)
class Component:
    name: str
    module: str
    version: str
    packages: tuple[str, ...]  # import paths of the main packages, built into binaries
    go_mod_extra: str = ""
    main_go: str = ""  # a wrapper main package, when the module has no usable one
    ldflags: str = ""

    def binaries(self) -> tuple[str, ...]:
        return tuple(p.rsplit("/", 1)[-1] for p in self.packages) if not self.main_go else (self.name,)


def _kube_ldflags() -> str:
    major, minor = v.KUBERNETES.removeprefix("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    stamp = {
        "gitVersion": v.KUBERNETES,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    return " ".join(f"-X {pkg}.{k}={val}" for k, val in stamp.items())


def components() -> list[Component]:
    staging = "\n".join(f"\tk8s.io/{m} => k8s.io/{m} {v.STAGING}" for m in v.STAGING_MODULES)
    return [
        Component(
            name="kubernetes",
            module="k8s.io/kubernetes",
            version=v.KUBERNETES,
            packages=tuple(f"k8s.io/kubernetes/cmd/{c}" for c in v.KUBE_COMMANDS),
            go_mod_extra=f"replace (\n{staging}\n)\n",
            ldflags=_kube_ldflags(),
        ),
        Component(
            name="etcd",
            module="go.etcd.io/etcd/server/v3",
            version=v.ETCD,
            packages=("go.etcd.io/etcd/server/v3/etcdmain",),
            main_go=(
                'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
                "func main() { etcdmain.Main(os.Args) }\n"
            ),
        ),
        Component(
            name="kwok",
            module="sigs.k8s.io/kwok",
            version=v.KWOK,
            packages=("sigs.k8s.io/kwok/cmd/kwok", "sigs.k8s.io/kwok/cmd/kwokctl"),
            ldflags=f"-X sigs.k8s.io/kwok/pkg/consts.Version={v.KWOK}",
        ),
        Component(
            name="helm",
            module="helm.sh/helm/v4",
            version=v.HELM,
            packages=("helm.sh/helm/v4/cmd/helm",),
            ldflags=f"-X helm.sh/helm/v4/internal/version.version={v.HELM}",
        ),
    ]


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOFLAGS="-mod=mod", GOTOOLCHAIN="local", CGO_ENABLED="0", GOWORK="off")
    return env


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=_go_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise BuildError(f"`{' '.join(cmd)}` failed in {cwd}:\n{tail}")


class BuildError(RuntimeError):
    """A component could not be built from the registries; the message says exactly what failed."""


def _write_wrapper(comp: Component, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    go_mod = (
        f"module tokenfleet.local/build/{comp.name}\n\ngo 1.26\n\nrequire {comp.module} {comp.version}\n\n"
    )
    (work / "go.mod").write_text(go_mod + comp.go_mod_extra)
    (work / "go.sum").unlink(missing_ok=True)
    if comp.main_go:
        (work / "main.go").write_text(comp.main_go)


def build_component(comp: Component, out: Path, say: Say) -> None:
    work = v.cache_dir() / "build" / comp.name
    _write_wrapper(comp, work)
    started = time.monotonic()
    say(f"  {comp.name} {comp.version}: resolving modules")
    _run(["go", "get", *[f"{p}@{comp.version}" for p in comp.packages]], work)
    say(f"  {comp.name} {comp.version}: compiling {', '.join(comp.binaries())} (2 cores: minutes)")
    flags = ["-trimpath", "-ldflags", f"-s -w {comp.ldflags}".strip()]
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    if comp.main_go:
        _run(["go", "build", *flags, "-o", str(tmp / comp.name), "."], work)
    else:
        _run(["go", "build", *flags, "-o", str(tmp) + "/", *comp.packages], work)
    out.mkdir(parents=True, exist_ok=True)
    for name in comp.binaries():
        os.replace(tmp / name, out / name)
    shutil.rmtree(tmp, ignore_errors=True)
    took = time.monotonic() - started
    say(f"  {comp.name}: built in {took:.0f}s")
    with open(v.cache_dir() / "cold-steps.txt", "a") as record:  # shown in the CI timing summary
        record.write(f"build-{comp.name} {took:.0f}\n")


def missing(out: Path) -> list[Component]:
    return [c for c in components() if not all((out / b).exists() for b in c.binaries())]


def ensure_built(say: Say = print, only: set[str] | None = None) -> Path:
    """Build whatever is missing from the pinned binary folder and return it."""
    out = v.bin_dir()
    todo = [c for c in missing(out) if only is None or c.name in only]
    if not shutil.which("go"):
        raise BuildError("the `go` command is not on PATH; it is needed to build the control plane")
    if todo:
        say(f"building {', '.join(c.name for c in todo)} into {out} (once; cached afterwards)")
    started = time.monotonic()
    for comp in todo:
        build_component(comp, out, say)
    if todo:
        say(f"control plane built in {time.monotonic() - started:.0f}s")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="component names to build (default: all)")
    args = parser.parse_args(argv)
    try:
        out = ensure_built(only=set(args.only) if args.only else None)
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
