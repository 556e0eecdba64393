"""Sign-in against a real Gradio server with webapp.logins: guesses sent at once wait in line per name and
per address, spraying one password over many names from one address slows down the same way, and the
people who know their password are not held up by others' failures -- nor by each other."""
import asyncio
import time

import gradio as gr
import httpx
import pytest

from tests.test_webapp_api import free_port
from webapp.logins import Logins, delay_after, login_middleware

FIRST, MOST = 0.05, 0.4                   # short waits, so that a test takes seconds
ALICE, MALLORY = "127.0.0.1", "127.0.0.2"     # two client addresses on the loopback network


@pytest.fixture(scope="module")
def url():
    with gr.Blocks() as demo:
        gr.Markdown("signed in")
    port = free_port()
    logins = Logins((("alice", "alice-pw"), ("bob", "bob-pw")), first_delay_s=FIRST, max_delay_s=MOST)
    demo.launch(server_name="127.0.0.1", server_port=port, auth=logins.check, prevent_thread_lock=True, quiet=True,
                app_kwargs={"middleware": login_middleware()})
    yield f"http://127.0.0.1:{port}"
    demo.close()


async def attempts(url: str, address: str, tries: list[tuple[str, str]]) -> list[tuple[bool, float, float]]:
    """Send all tries at once from `address`; (accepted, when it was answered, how long it took) each, in
    seconds after the first was sent."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(transport=transport, timeout=120) as client:
        started = time.monotonic()

        async def one(username, password):
            sent = time.monotonic()
            answer = await client.post(f"{url}/login", data={"username": username, "password": password})
            assert answer.status_code in (200, 400), answer.text
            return answer.status_code == 200, time.monotonic() - started, time.monotonic() - sent

        return await asyncio.gather(*(one(u, p) for u, p in tries))


def waits(n: int) -> float:
    """The least time n failures in a row take to answer, one after another."""
    return sum(delay_after(i, FIRST, MOST) for i in range(n))


def test_guesses_sent_at_once_wait_in_line_and_alice_is_not_held_up(url):
    async def scene():
        assert (await attempts(url, ALICE, [("alice", "alice-pw")]))[0][0]          # alice's machine, known
        guesses = asyncio.create_task(attempts(url, MALLORY, [("alice", f"guess-{i}") for i in range(20)]))
        await asyncio.sleep(1.0)                                                  # the guesses are in line
        alice = await attempts(url, ALICE, [("alice", "alice-pw")] * 12)        # twelve tabs at once
        return await guesses, alice

    guessed, alice = asyncio.run(scene())
    assert not any(ok for ok, _, _ in guessed)
    assert max(at for _, at, _ in guessed) >= waits(20)              # 6.75 s: one after another, not at once
    assert all(ok for ok, _, _ in alice) and max(took for _, _, took in alice) < 1.0


def test_one_password_on_many_names_from_one_address_slows_down(url):
    sprayed = asyncio.run(attempts(url, "127.0.0.3", [(f"user{i}", "password1") for i in range(15)]))
    assert not any(ok for ok, _, _ in sprayed)
    assert max(at for _, at, _ in sprayed) >= waits(15)


def test_a_name_guessed_from_elsewhere_delays_a_new_address_but_a_success_clears_it(url):
    asyncio.run(attempts(url, "127.0.0.4", [("bob", f"guess-{i}") for i in range(4)]))   # 3 waits: 0.35 s
    (ok, _, took), = asyncio.run(attempts(url, "127.0.0.5", [("bob", "bob-pw")]))        # bob, from a new place
    assert ok and took >= delay_after(4, FIRST, MOST)
    (ok, _, took), = asyncio.run(attempts(url, "127.0.0.6", [("bob", "bob-pw")]))
    assert ok and took < delay_after(1, FIRST, MOST)
