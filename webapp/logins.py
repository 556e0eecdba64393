"""Local logins (AFFECTLENS_USERS) with sign-in failures that slow down: each failed attempt for a name
doubles the wait before that name's next answer, up to MAX_DELAY_S; a success resets it. Guessing 30
passwords then takes minutes instead of a second or two. Gradio calls this from its async /login route,
so the wait is an asyncio sleep that holds no worker thread."""
from __future__ import annotations

import asyncio
import hmac
from collections import defaultdict

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 8.0


def delay_after(failures: int) -> float:
    """Seconds to wait before answering a name that failed `failures` times in a row."""
    return 0.0 if failures <= 0 else min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** (failures - 1))


class Logins:
    def __init__(self, users: tuple[tuple[str, str], ...]):
        self.users = dict(users)
        self.failures: defaultdict[str, int] = defaultdict(int)

    async def check(self, username: str, password: str) -> bool:
        """Gradio's auth function (a coroutine function: Gradio awaits only what inspect says is one)."""
        # The attempt counts as a failure until it succeeds, so that attempts sent at once wait in turn.
        waited = self.failures[username]
        self.failures[username] += 1
        await asyncio.sleep(delay_after(waited))
        expected = self.users.get(username)
        ok = expected is not None and hmac.compare_digest(password.encode(), expected.encode())
        if ok:
            self.failures[username] = 0
        return ok
