#!/usr/bin/env python3
"""A small client of the flashrent API, and the seed document's test script.

    python3 tests/test_api.py --test-purchase-flow [--base-url http://127.0.0.1:8000]
        [--admin-token T] [--api-key K] [--user-id 123]

runs the whole purchase flow against a running server, printing each request and its
answer: credit the user (admin), add a receiving wallet, read the balance, quote, place the
order at the quoted price, deduct (idempotent: the order paid already), check the pool's
availability, and follow the order until it is completed. Exit status 0 when every step
answered as it should, 1 (with the reason) when one did not, 2 when the server cannot be
reached or the arguments are wrong.

    python3 tests/test_api.py --test-single quote [--energy 65000 --duration 1h]

calls one endpoint (health, balance, wallets, ledger, orders, order --order-id ID, quote,
availability) and prints its answer.

The admin token is --admin-token, else FLASHRENT_ADMIN_TOKEN, else the file a server
started in this directory writes (flashrent-data/admin-token). The API key (needed once keys
exist) is --api-key, else FLASHRENT_API_KEY. Python 3.8+, standard library only.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from decimal import Decimal

RENTER = "TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2"  # activated on the in-process devnet


class StepFailed(Exception):
    pass


class Unreachable(Exception):
    pass


class Client:
    def __init__(self, base_url, admin_token=None, api_key=None, timeout=30, quiet=False):
        self.base = base_url.rstrip("/")
        self.admin_token = admin_token
        self.api_key = api_key
        self.timeout = timeout
        self.quiet = quiet

    def call(self, method, path, body=None, admin=False, headers=None):
        """(status, parsed JSON answer). Amounts are parsed as Decimal, never floats."""
        url = self.base + path
        data = None
        hdrs = {"Accept": "application/json", "Accept-Language": "en"}
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if admin:
            if not self.admin_token:
                raise StepFailed("this step needs the admin token: --admin-token or FLASHRENT_ADMIN_TOKEN")
            hdrs["Authorization"] = "Bearer " + self.admin_token
        elif self.api_key:
            hdrs["X-API-Key"] = self.api_key
        hdrs.update(headers or {})
        self._show("->", method, path, data.decode() if data else "")
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            raise Unreachable(f"cannot reach {url}: {getattr(e, 'reason', e)}") from e
        text = raw.decode("utf-8", "replace")
        try:
            answer = json.loads(text, parse_float=Decimal) if text else None
        except ValueError:
            answer = text
        self._show("<-", status, "", text)
        return status, answer

    def _show(self, arrow, a, b, text):
        if self.quiet:
            return
        text = text if len(text) <= 400 else text[:400] + "…"
        print(f"  {arrow} {a} {b} {text}".rstrip())


def expect(status, answer, *wanted):
    if status not in wanted:
        if isinstance(answer, dict) and "error" in answer:
            why = f"{answer['error']}: {answer.get('message', '')}"
        else:
            why = str(answer)[:200]
        raise StepFailed(f"expected HTTP {' or '.join(map(str, wanted))}, got {status} ({why})")
    return answer


def number(value):
    """A JSON number from the exact decimal of a Decimal (json would go through a float)."""
    return str(value)


def step(n, title):
    print(f"\n[{n}] {title}")


def purchase_flow(c, args):
    user = args.user_id
    energy, duration, address = args.energy, args.duration, args.address
    run = uuid.uuid4().hex[:12]

    step(1, f"credit user {user} with {args.credit_trx} TRX (admin)")
    body = f'{{"amount_trx": {args.credit_trx}, "reference": "test_api-{run}"}}'
    s, a = c.call("POST", f"/api/admin/users/{user}/credit", body, admin=True)
    a = expect(s, a, 201)
    print(f"  credited; balance {a['balance_trx']} TRX")

    step(2, f"add the receiving wallet {address}")
    s, a = c.call("POST", f"/api/wallets/users/{user}", {"wallet_address": address})
    if s == 409 and isinstance(a, dict) and a.get("error") == "wallet_already_exists":
        print("  already added")
    else:
        expect(s, a, 201)
    s, a = c.call("GET", f"/api/wallets/users/{user}")
    wallets = [w["wallet_address"] for w in expect(s, a, 200)["wallets"]]
    if address not in wallets:
        raise StepFailed(f"{address} is not among the user's wallets {wallets}")

    step(3, "read the balance")
    s, a = c.call("GET", f"/api/users/{user}/balance")
    before = Decimal(expect(s, a, 200)["balance_sun"])
    print(f"  {a['balance_trx']} TRX")

    step(4, f"quote {energy} energy for {duration}")
    q = urllib.parse.urlencode({"energy_amount": energy, "duration": duration})
    s, a = c.call("GET", f"/api/quote?{q}")
    quote = expect(s, a, 200)
    cost, cost_sun = quote["cost_trx"], Decimal(quote["cost_sun"])
    if not quote["available"]:
        raise StepFailed(f"the pool has no wallet with {energy} energy now (largest: {quote['available_energy']})")
    print(f"  {cost} TRX, from {quote['selected_wallet']}")
    if before < cost_sun:
        raise StepFailed(f"balance {before} SUN is below the price {cost_sun} SUN")

    step(5, "place the order at the quoted price (the seed's order)")
    order = json.dumps({"user_id": str(user), "energy_amount": energy, "duration": duration, "receive_address": address})
    order = order[:-1] + f', "cost_trx": {number(cost)}}}'
    s, a = c.call("POST", "/api/orders", order, headers={"Idempotency-Key": f"test_api-{run}"})
    placed = expect(s, a, 201)
    order_id = placed["order_id"]
    print(f"  order {order_id}: {placed['status']}, {placed['cost_trx']} TRX")

    step(6, "deduct: the order paid already, so nothing is taken twice")
    body = f'{{"amount": {number(cost)}, "order_id": "{order_id}", "reason": "energy_purchase"}}'
    s, a = c.call("POST", f"/api/users/{user}/deduct", body)
    d = expect(s, a, 200)
    if d["status"] != "already_deducted" or d["deducted"]:
        raise StepFailed(f"the deduct took the price again: {d}")
    s, a = c.call("GET", f"/api/users/{user}/balance")
    after = Decimal(expect(s, a, 200)["balance_sun"])
    if before - after != cost_sun:
        raise StepFailed(f"the balance went from {before} to {after} SUN for a {cost_sun} SUN order")
    print(f"  already deducted; balance {a['balance_trx']} TRX")

    step(7, "check the pool's availability")
    s, a = c.call("POST", "/api/wallet-pool/check-availability", {"energy_amount": energy, "duration": duration})
    a = expect(s, a, 200)
    print(f"  available: {a['available']} ({a['available_energy']} energy at {a['selected_wallet']})")

    step(8, f"follow the order until it is completed (at most {args.wait} s)")
    deadline = time.monotonic() + args.wait
    seen = None
    while True:
        s, o = c.call("GET", f"/api/orders/{order_id}") if seen is None else quiet_get(c, order_id)
        o = expect(s, o, 200)
        if o["status"] != seen:
            seen = o["status"]
            print(f"  {seen}")
        if seen == "completed":
            print(f"  delegated in transaction {o['transaction_hash']} (block {o['block_number']})")
            return
        if seen in ("failed", "refunded"):
            raise StepFailed(
                f"order {order_id} ended {seen}: {o.get('failure_reason')} ({o.get('failure_message')}); "
                f"refunded: {o.get('refunded_at') is not None}"
            )
        if time.monotonic() > deadline:
            raise StepFailed(f"order {order_id} is still {seen} after {args.wait} s")
        time.sleep(0.5)


def quiet_get(c, order_id):
    quiet, c.quiet = c.quiet, True
    try:
        return c.call("GET", f"/api/orders/{order_id}")
    finally:
        c.quiet = quiet


def single(c, args):
    u = args.user_id
    q = urllib.parse.urlencode({"energy_amount": args.energy, "duration": args.duration})
    calls = {
        "health": ("GET", "/healthz", None),
        "balance": ("GET", f"/api/users/{u}/balance", None),
        "wallets": ("GET", f"/api/wallets/users/{u}", None),
        "ledger": ("GET", f"/api/users/{u}/ledger", None),
        "orders": ("GET", f"/api/users/{u}/orders", None),
        "order": ("GET", f"/api/orders/{args.order_id}", None),
        "quote": ("GET", f"/api/quote?{q}", None),
        "availability": ("POST", "/api/wallet-pool/check-availability", {"energy_amount": args.energy, "duration": args.duration}),
    }
    if args.test_single == "order" and not args.order_id:
        raise SystemExit("--test-single order needs --order-id")
    method, path, body = calls[args.test_single]
    s, a = c.call(method, path, body)
    expect(s, a, 200)


def admin_token(args):
    if args.admin_token:
        return args.admin_token
    if os.environ.get("FLASHRENT_ADMIN_TOKEN"):
        return os.environ["FLASHRENT_ADMIN_TOKEN"]
    try:
        with open(args.admin_token_file) as f:
            return f.read().strip()
    except OSError:
        return None


def main(argv=None):
    p = argparse.ArgumentParser(description="Run flashrent's purchase flow, or single endpoints, against a running server.")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--test-purchase-flow", action="store_true", help="the whole purchase flow")
    mode.add_argument("--test-single", choices=["health", "balance", "wallets", "ledger", "orders", "order", "quote", "availability"])
    p.add_argument("--base-url", default=os.environ.get("FLASHRENT_URL", "http://127.0.0.1:8000"))
    p.add_argument("--admin-token", help="default: FLASHRENT_ADMIN_TOKEN, else --admin-token-file")
    p.add_argument("--admin-token-file", default="flashrent-data/admin-token")
    p.add_argument("--api-key", default=os.environ.get("FLASHRENT_API_KEY"), help="default: FLASHRENT_API_KEY")
    p.add_argument("--user-id", default="123")
    p.add_argument("--address", default=RENTER, help="the receiving TRON address")
    p.add_argument("--energy", type=int, default=65000)
    p.add_argument("--duration", default="1h")
    p.add_argument("--credit-trx", default="25.5", help="TRX credited before the order")
    p.add_argument("--order-id")
    p.add_argument("--wait", type=float, default=60, help="seconds to wait for the order to complete")
    args = p.parse_args(argv)
    c = Client(args.base_url, admin_token(args), args.api_key)
    try:
        if args.test_purchase_flow:
            purchase_flow(c, args)
            print("\nOK: the purchase flow completed")
        else:
            single(c, args)
    except StepFailed as e:
        hint = ""
        if "unauthorized" in str(e) and not args.api_key:
            hint = " (this server needs an API key: --api-key or FLASHRENT_API_KEY)"
        print(f"\nFAILED: {e}{hint}", file=sys.stderr)
        return 1
    except Unreachable as e:
        print(f"\nFAILED: {e} (is the server running? `cargo run --release -- serve`)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
