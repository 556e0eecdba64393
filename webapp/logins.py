"""Local logins (AFFECTLENS_USERS) with sign-in failures that slow guessing down without slowing the
people who know their password.

Failures are counted per client address and per name. Attempts are answered one at a time per address
and per name (an asyncio lock each: 200 guesses sent at once wait in line like 200 sent one after
another), each after delay_after(failures) -- doubling per failure, up to MAX_DELAY_S -- so guessing 30
passwords, or one password on 500 names, takes minutes instead of seconds. An address that has signed in
as a name before is not held up by that name's failures from elsewhere (nor queued behind them): someone
guessing alice's password from another machine never delays alice. A success clears its address's and
its name's count; counts of addresses and names that fail no more are forgotten after FORGET_S.

Gradio's auth function does not see the request, so a small ASGI middleware on the login route
(login_middleware, passed to the server's app) puts the client's address where check() reads it. Gradio
calls check() from its async /login route, so waits are asyncio sleeps that hold no worker thread.

The client's address is the connection's peer, unless the app runs behind trusted proxies
(AFFECTLENS_TRUSTED_PROXIES, 1 on a Hugging Face Space): there every request arrives from the proxy, so the
address is read from X-Forwarded-For, where each proxy appends the address it received the request from --
the n-th from the right behind n proxies; what a client wrote further left is ignored, and so is the
whole header where no proxy is trusted (webapp.app turns off the web server's own reading of it).
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
import weakref
from contextvars import ContextVar

from starlette.middleware import Middleware

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 8.0
FORGET_S = 900.0               # a count with no failure for this long starts again from 0
MAX_TRACKED = 10_000           # counts kept before the forgotten ones are dropped

_CLIENT: ContextVar[str] = ContextVar("affectlens_login_client", default="unknown")


def delay_after(failures: int, first_s: float = FIRST_DELAY_S, max_s: float = MAX_DELAY_S) -> float:
    """Seconds to wait before answering after `failures` failures in a row."""
    return 0.0 if failures <= 0 else min(max_s, first_s * 2 ** (failures - 1))


def client_address(scope, trusted_proxies: int) -> str:
    """The address of a request's client: its peer, or behind `trusted_proxies` proxies the address the
    outermost one received the request from (the peer when the header has fewer entries: not all of the
    trusted proxies saw it)."""
    peer = (scope.get("client") or ("unknown",))[0]
    if trusted_proxies <= 0:
        return peer
    forwarded = [address.strip() for name, value in scope["headers"] if name == b"x-forwarded-for"
                 for address in value.decode("latin-1").split(",") if address.strip()]
    return forwarded[-trusted_proxies] if len(forwarded) >= trusted_proxies else peer


class ClientAddress:
    """ASGI middleware: the address of the client posting to a login route, for Logins.check."""

    def __init__(self, app, trusted_proxies: int = 0):
        self.app, self.trusted_proxies = app, trusted_proxies

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].rstrip("/").endswith("/login"):
            return await self.app(scope, receive, send)
        token = _CLIENT.set(client_address(scope, self.trusted_proxies))
        try:
            await self.app(scope, receive, send)
        finally:
            _CLIENT.reset(token)


def login_middleware(trusted_proxies: int = 0) -> list[Middleware]:
    """For the server's app: launch(..., app_kwargs={"middleware": login_middleware(n)})."""
    return [Middleware(ClientAddress, trusted_proxies=trusted_proxies)]


class Logins:
    def __init__(self, users: tuple[tuple[str, str], ...], first_delay_s: float = FIRST_DELAY_S,
                 max_delay_s: float = MAX_DELAY_S):
        self.users = dict(users)
        self.first_delay_s, self.max_delay_s = first_delay_s, max_delay_s
        self.failures: dict[tuple[str, str], tuple[int, float]] = {}     # key -> (count, last failure)
        self.known: set[tuple[str, str]] = set()                         # (name, address) that signed in
        self._lines: weakref.WeakValueDictionary = weakref.WeakValueDictionary()

    async def check(self, username: str, password: str) -> bool:
        """Gradio's auth function (a coroutine function: Gradio awaits only what inspect says is one)."""
        address = _CLIENT.get()
        keys = [("address", address)]
        if (username, address) not in self.known:
            keys.append(("name", username))
        async with contextlib.AsyncExitStack() as stack:
            for key in sorted(keys):                   # one order everywhere: no two attempts deadlock
                await stack.enter_async_context(self._line(key))
            await asyncio.sleep(max(delay_after(self._count(key), self.first_delay_s, self.max_delay_s)
                                    for key in keys))
            expected = self.users.get(username)
            ok = expected is not None and hmac.compare_digest(password.encode(), expected.encode())
            if ok:
                self.known.add((username, address))
                for key in (("address", address), ("name", username)):
                    self.failures.pop(key, None)
            else:
                for key in (("address", address), ("name", username)):
                    self.failures[key] = (self._count(key) + 1, time.monotonic())
                self._forget()
        return ok

    def _line(self, key: tuple[str, str]) -> asyncio.Lock:
        """The queue of attempts for an address or a name (dropped once no attempt waits in it)."""
        lock = self._lines.get(key)
        if lock is None:
            lock = self._lines[key] = asyncio.Lock()
        return lock

    def _count(self, key: tuple[str, str]) -> int:
        count, last = self.failures.get(key, (0, 0.0))
        return count if time.monotonic() - last < FORGET_S else 0

    def _forget(self) -> None:
        if len(self.failures) > MAX_TRACKED:
            for key in [k for k in self.failures if self._count(k) == 0]:
                del self.failures[key]
