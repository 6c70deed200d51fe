#!/usr/bin/env python3
"""Side-by-side load figures: the broker and the peer provider (panva oidc-provider), back to
back on this machine, pinned as in ../shared/reference/peers.md: the server on core 0, the load
generator on core 1. Called by `bench/run` after it has built and installed what this needs.

Simple endpoints are loaded with wrk (1 thread, 32 keep-alive connections, 2 s warm-up, then
the measured seconds); logins with the Rust driver `bench_load` (examples/bench_load.rs). For
every row the table shows the load generator's CPU share, and the server's, over the measured
window: a load generator near 100% means the row measures the generator, not the server.
"""

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# BENCH_BROKER_BIN: another build of the broker to measure (a before/after comparison).
BROKER = os.environ.get("BENCH_BROKER_BIN", os.path.join(REPO, "target/release/broker"))
DRIVER = os.path.join(REPO, "target/release/examples/bench_load")
SERVER_CORE, LOAD_CORE = "0", "1"
SECRET = "bench-confidential-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(pid):
    """utime + stime of a process in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def postgres_pids():
    """Processes of the PostgreSQL server (postmaster and backends)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() == "postgres":
                        out.append(int(d))
            except OSError:
                pass
    return out


def server_cpu(server):
    """CPU seconds of the server so far, its database's processes included."""
    total = proc_cpu(server.proc.pid)
    if server.with_postgres:
        for pid in postgres_pids():
            try:
                total += proc_cpu(pid)
            except OSError:
                pass
    return total


def proc_mem(pid):
    """(VmRSS, VmHWM) in MiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) / 1024
    return out.get("VmRSS", 0.0), out.get("VmHWM", 0.0)


def wait_ready(url, proc, timeout=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            time.sleep(0.005)
    sys.exit(f"server not ready at {url} after {timeout} s")


class Server:
    """A provider under test: started pinned to the server core."""

    def __init__(self, name, argv, env, base, issuer, ready_path, cwd=None):
        self.name, self.base, self.issuer = name, base, issuer
        self.with_postgres = "BROKER_DATABASE_URL" in env
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE] + argv,
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(env.get("BENCH_LOG_DIR", "/tmp"), f"{name}.log"), "w"),
        )
        wait_ready(base + ready_path, self.proc)
        self.startup_ms = (time.monotonic() - t0) * 1000
        time.sleep(1)
        self.idle_rss = proc_mem(self.proc.pid)[0]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wrk(server, path, seconds, script=None, label=""):
    args = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", "-c32", "--latency"]
    if script:
        args += ["-s", script]
    url = server.base + path
    # Warm-up, then the measured run.
    subprocess.run(args + ["-d2s", url], check=True, capture_output=True)
    s0 = server_cpu(server)
    t0 = time.monotonic()
    p = subprocess.Popen(args + [f"-d{seconds}s", url], stdout=subprocess.PIPE, text=True)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    out = p.stdout.read()
    s1 = server_cpu(server)
    if status != 0:
        sys.exit(f"wrk failed on {label}: {out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    if bad or errs:
        sys.exit(f"{server.name} {label}: errors under load:\n{out}")

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    return {
        "rate": rate,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "driver_cpu": (ru.ru_utime + ru.ru_stime) / wall,
        "server_cpu": (s1 - s0) / wall,
    }


def login_load(server, target, concurrency, seconds, card=None):
    args = ["taskset", "-c", LOAD_CORE, DRIVER, "login", "--target", target,
            "--base", server.base, "--issuer", server.issuer,
            "--concurrency", str(concurrency), "--seconds", str(seconds), "--warmup", "2",
            "--server-pid", str(server.proc.pid)]
    if card:
        args += ["--card", card]
    s0, t0 = server_cpu(server), time.monotonic()
    r = subprocess.run(args, check=True, capture_output=True, text=True)
    v = json.loads(r.stdout.strip().splitlines()[-1])
    if server.with_postgres:
        # The driver sees the broker process only: count the database server's share too
        # (over the whole run, warm-up included).
        v["server_cpu"] = (server_cpu(server) - s0) / (time.monotonic() - t0)
    if v["errors"]:
        sys.exit(f"{server.name} logins: {v['errors']} failed, first: {v['first_error']}")
    return v


def one_token(server, target, card=None):
    args = [DRIVER, "token", "--target", target, "--base", server.base, "--issuer", server.issuer]
    if card:
        args += ["--card", card]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def lua(dir, name, method, body=None, headers=None):
    path = os.path.join(dir, name + ".lua")
    with open(path, "w") as f:
        f.write(f'wrk.method = "{method}"\n')
        if body:
            f.write(f'wrk.body = "{body}"\n')
        for k, v in (headers or {}).items():
            f.write(f'wrk.headers["{k}"] = "{v}"\n')
    return path


def measure(server, target, tmp, seconds, card=None, only=None):
    basic = base64.b64encode(f"bench-confidential:{SECRET}".encode()).decode()
    form = "application/x-www-form-urlencoded"
    if target == "peer":
        cc_body = "grant_type=client_credentials&scope=api&resource=urn:bench:api"
        disco = "/.well-known/openid-configuration"
    else:
        cc_body = "grant_type=client_credentials&scope=signatures:verify"
        disco = "/.well-known/openid-configuration"
    with urllib.request.urlopen(server.base + disco) as r:
        meta = json.load(r)
    path = lambda k: urllib.parse.urlsplit(meta[k]).path
    rows = {}

    def want(row):
        return not only or any(o in row for o in only)

    if want("GET discovery"):
        rows["GET discovery"] = wrk(server, disco, seconds, label="discovery")
    if want("GET jwks"):
        rows["GET jwks"] = wrk(server, path("jwks_uri"), seconds, label="jwks")
    cc_row = "POST token (client_credentials, ES256)"
    if want(cc_row):
        cc = lua(tmp, f"{target}-cc", "POST", cc_body,
                 {"Content-Type": form, "Authorization": "Basic " + basic})
        rows[cc_row] = wrk(server, path("token_endpoint"), seconds, cc, "cc token")
    if want("GET userinfo"):
        at = one_token(server, target, card)
        ui = lua(tmp, f"{target}-ui", "GET", None, {"Authorization": "Bearer " + at})
        rows["GET userinfo"] = wrk(server, path("userinfo_endpoint"), seconds, ui, "userinfo")
    if want("login, sequential"):
        rows["login, sequential"] = login_load(server, target, 1, seconds, card)
    if want("login, 16 concurrent"):
        rows["login, 16 concurrent"] = login_load(server, target, 16, seconds, card)
    rss, hwm = proc_mem(server.proc.pid)
    return rows, {"startup_ms": server.startup_ms, "idle_rss": server.idle_rss,
                  "rss_after": rss, "peak_rss": hwm}


def start_peer(tmp):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, BENCH_LOG_DIR=tmp, NODE_ENV="production")
    return Server("peer", ["node", "server.mjs", str(port)], env, base, base,
                  "/.well-known/openid-configuration", cwd=os.path.join(REPO, "bench/peer"))


def start_broker(tmp, database_url=None, name="broker"):
    port = free_port()
    data = os.path.join(tmp, name + "-data")
    env = dict(
        os.environ,
        BENCH_LOG_DIR=tmp,
        BROKER_DATA_DIR=data,
        BROKER_LISTEN=f"127.0.0.1:{port}",
        BROKER_ISSUER=f"http://localhost:{port}",
        BROKER_RELYING_PARTIES_DIR=os.path.join(REPO, "bench/relying-parties"),
        BROKER_POLICIES_DIR=os.path.join(REPO, "policies"),
    )
    if database_url:
        env["BROKER_DATABASE_URL"] = database_url
    s = Server(name, [BROKER, "serve"], env, f"http://127.0.0.1:{port}",
               f"http://localhost:{port}", "/.well-known/openid-configuration")
    card = os.path.join(tmp, name + "-card")
    subprocess.run([BROKER, "card", "issue", "--out", card], env=env, check=True,
                   capture_output=True)
    return s, card


def fmt_rate(v):
    return f"{v:,.0f}"


def print_table(results, meta, columns):
    ref = "peer"
    head = "| endpoint | " + " | ".join(
        f"{c} req/s (p50 / p99 ms) [load CPU, server CPU]" for c in columns)
    head += "".join(f" | {c} ÷ peer" for c in columns if c != ref) + " |"
    print(head)
    print("|" + "---|" * (1 + len(columns) + len(columns) - 1))
    for row in results[ref]:
        cells = []
        for c in columns:
            v = results[c][row]
            cells.append(f"{fmt_rate(v['rate'])} ({v['p50_ms']:.2f} / {v['p99_ms']:.2f}) "
                         f"[{v['driver_cpu']*100:.0f}%, {v['server_cpu']*100:.0f}%]")
        ratios = [f"{results[c][row]['rate'] / results[ref][row]['rate']:.1f}×"
                  for c in columns if c != ref]
        print(f"| {row} | " + " | ".join(cells + ratios) + " |")
    print()
    print("| process | start-up ms | RSS idle MiB | RSS after load MiB | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for c in columns:
        m = meta[c]
        print(f"| {c} | {m['startup_ms']:.0f} | {m['idle_rss']:.1f} | {m['rss_after']:.1f} "
              f"| {m['peak_rss']:.1f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--postgres", help="also measure the broker on this PostgreSQL URL")
    ap.add_argument("--only", choices=["broker", "peer"], help="one provider only")
    ap.add_argument("--json", help="write all figures to this file")
    ap.add_argument("--rows", nargs="*", help="only the rows whose names contain one of these")
    a = ap.parse_args()
    if os.cpu_count() < 2:
        sys.exit("needs two cores: server on core 0, load on core 1")
    tmp = tempfile.mkdtemp(prefix="broker-bench-")
    results, meta, columns = {}, {}, []
    runs = []
    if a.only != "broker":
        runs.append(("peer", lambda: (start_peer(tmp), None), "peer"))
    if a.only != "peer":
        runs.append(("broker", lambda: start_broker(tmp), "broker"))
        if a.postgres:
            runs.append(("broker-pg", lambda: start_broker(tmp, a.postgres, "broker-pg"), "broker"))
    for name, start, target in runs:
        print(f"# {name} …", file=sys.stderr)
        server, card = start()
        try:
            results[name], meta[name] = measure(server, target, tmp, a.seconds, card, a.rows)
        finally:
            server.stop()
        columns.append(name)
    if "peer" not in results:
        results["peer"] = results[columns[0]]
    print_table(results, meta, columns)
    limits = json.loads(subprocess.run(["taskset", "-c", SERVER_CORE, DRIVER, "es256"],
                                       check=True, capture_output=True, text=True).stdout)
    es = limits["es256_signs_per_s"]
    print()
    print(f"One core's ES256 signing limit (aws-lc-rs, core {SERVER_CORE}): {es:,.0f} signatures/s.")
    rsa, verify = limits["rsa2048_signs_per_s"], limits["es256_verifies_per_s"]
    floor = 1 / rsa + 1 / verify
    print(f"The virtual card's RSA-2048 signature, made by the login driver per broker login: "
          f"{rsa:,.0f}/s on one core — a ceiling on the broker's "
          "login rows that the peer's rows do not have.")
    print(f"Crypto the load core must do per broker login (the card's signature + the ID "
          f"token's ES256 check at {verify:,.0f}/s): {floor * 1e6:.0f} µs — at most "
          f"{1 / floor:,.0f} logins/s with no HTTP at all.")
    lr = "login, 16 concurrent"
    if lr in results["peer"] and "peer" in columns:
        need = 5 * results["peer"][lr]["rate"]
        print(f"5× the peer's logins at 16 ({need:,.0f}/s) would take {need * floor * 100:.0f}% "
              "of the load core in that crypto alone.")
    cc = "POST token (client_credentials, ES256)"
    for c in columns:
        if c != "peer" and cc in results[c]:
            print(f"{c}: client_credentials tokens use {results[c][cc]['rate'] / es * 100:.0f}% "
                  "of it (one signature per token).")
    if a.postgres:
        print("broker-pg: server CPU counts the broker and the PostgreSQL server (both on core "
              f"{SERVER_CORE}).")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "meta": meta}, f, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
