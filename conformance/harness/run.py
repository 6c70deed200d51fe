"""Run the conformance plans (plans.toml) against the real broker binary with both client
libraries, and compare every module's result with ../expectations.toml. Exit status 1 on any
unexpected pass, fail or skip, or on a module without an expectation.

    python conformance/harness/run.py --bin target/debug/broker [--plan NAME] [--lib authlib]

Starts its own broker (demo mode, loopback, a temporary data directory, the shipped policies and
relying parties plus relying-parties/ here), issues a virtual card, and plays the person's
browser and card helper (`broker card approve`) wherever a module needs a login.
"""
import argparse
import concurrent.futures
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback

import requests

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scenarios  # noqa: E402
from clients import AuthlibRp, NodeRp, OAuthFailure  # noqa: E402

REPO = HERE.parents[1]
LIBS = {"authlib": AuthlibRp, "openid-client": NodeRp}
CLIENTS = {"basic": "conformance-basic", "post": "conformance-post"}
SECRET = "conformance-secret"


class Ctx:
    """What a scenario needs: the broker, the card, and relying parties of one library."""

    def __init__(self, issuer, bin_path, card, lib):
        self.issuer, self.bin, self.card, self.lib = issuer, bin_path, card, lib
        self.redirect = "http://127.0.0.1:8766/cb"
        self.opened = []

    def rp(self, auth="basic"):
        rp = LIBS[self.lib](self.issuer, CLIENTS[auth], SECRET, auth)
        self.opened.append(rp)
        rp.discover()
        return rp

    def client_id(self, rp):
        return rp.client_id

    def close(self):
        for rp in self.opened:
            rp.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_broker(bin_path, work):
    rps = work / "relying-parties"
    shutil.copytree(REPO / "relying-parties", rps)
    for f in (HERE / "relying-parties").glob("*.toml"):
        shutil.copy(f, rps / f.name)
    port = free_port()
    issuer = f"http://localhost:{port}"
    env = dict(
        os.environ,
        BROKER_ISSUER=issuer,
        BROKER_LISTEN=f"127.0.0.1:{port}",
        BROKER_DATA_DIR=str(work / "data"),
        BROKER_RELYING_PARTIES_DIR=str(rps),
        BROKER_POLICIES_DIR=str(REPO / "policies"),
        RUST_LOG="warn",
    )
    proc = subprocess.Popen([bin_path, "serve"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while True:
        try:
            requests.get(f"{issuer}/.well-known/openid-configuration", timeout=2)
            break
        except requests.ConnectionError:
            if time.time() > deadline or proc.poll() is not None:
                raise SystemExit("the broker did not start")
            time.sleep(0.1)
    card = work / "card"
    subprocess.run([bin_path, "card", "issue", "--out", str(card)], env=env, cwd=REPO,
                   check=True, capture_output=True)
    os.environ["BROKER_DATA_DIR"] = env["BROKER_DATA_DIR"]
    return proc, issuer, str(card)


def run_module(ctx, module):
    """('pass' | 'skipped' | 'fail', detail)."""
    try:
        rp = ctx.rp("basic")
        getattr(scenarios, module["scenario"])(ctx, rp, module.get("params", {}))
        return "pass", ""
    except scenarios.Skip as e:
        return "skipped", str(e)
    except (AssertionError, OAuthFailure) as e:
        return "fail", f"{type(e).__name__}: {e}"
    except Exception as e:  # a crash is a failure with its trace
        return "fail", "".join(traceback.format_exception_only(type(e), e)).strip()


def run_lib(issuer, bin_path, card, lib, modules):
    """Every module with one library; slow ones (waits) run beside the others."""
    results = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        slow = {}
        for plan, m in modules:
            if m.get("slow"):
                ctx = Ctx(issuer, bin_path, card, lib)
                slow[(plan, m["name"])] = (pool.submit(run_module, ctx, m), ctx)
        ctx = Ctx(issuer, bin_path, card, lib)
        for plan, m in modules:
            if not m.get("slow"):
                results[(plan, m["name"])] = run_module(ctx, m)
        ctx.close()
        for key, (fut, c) in slow.items():
            results[key] = fut.result()
            c.close()
    return results


def expectation(expect, plan, name):
    e = expect.get(plan, {}).get(name)
    if e is None:
        return None, None
    if isinstance(e, str):
        return e, None
    return e["expect"], e.get("reason")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--plan", action="append")
    ap.add_argument("--lib", action="append", choices=sorted(LIBS))
    args = ap.parse_args()
    plans = tomllib.loads((HERE / "plans.toml").read_text())["plan"]
    expect = tomllib.loads((HERE.parent / "expectations.toml").read_text())
    modules = [(p["name"], m) for p in plans if not args.plan or p["name"] in args.plan
               for m in p["modules"]]
    libs = args.lib or list(LIBS)
    work = pathlib.Path(tempfile.mkdtemp(prefix="conformance-"))
    proc, issuer, card = start_broker(args.bin, work)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(libs)) as pool:
            futs = {lib: pool.submit(run_lib, issuer, args.bin, card, lib, modules) for lib in libs}
            results = {lib: f.result() for lib, f in futs.items()}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)

    bad = 0
    width = max(len(m["name"]) for _, m in modules)
    print(f"{'module':<{width}}  " + "  ".join(f"{lib:<13}" for lib in libs) + "  expected")
    for plan, m in modules:
        want, reason = expectation(expect, plan, m["name"])
        cells = []
        for lib in libs:
            got, detail = results[lib][(plan, m["name"])]
            ok = want == got
            cells.append(f"{got:<13}" if ok else f"{got.upper() + '!':<13}")
            if not ok:
                bad += 1
                print(f"  UNEXPECTED {plan} {m['name']} with {lib}: {got} (expected {want}) {detail}",
                      file=sys.stderr)
            if want is None:
                print(f"  {plan} {m['name']}: no expectation in expectations.toml", file=sys.stderr)
        note = want if want is not None else "MISSING"
        if reason:
            note += f" — {reason}"
        elif want not in (None, "pass"):
            bad += 1
            print(f"  {plan} {m['name']}: '{want}' needs a reason", file=sys.stderr)
        print(f"{m['name']:<{width}}  " + "  ".join(cells) + f"  {note}")
    total = len(modules) * len(libs)
    print(f"\n{total - bad} of {total} module runs as expected ({len(modules)} modules × {len(libs)} client libraries)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
