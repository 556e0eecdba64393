"""Sign-in behind a proxy, against the running server: behind a trusted proxy (AFFECTLENS_TRUSTED_PROXIES)
every request comes from the proxy's address, and failures are counted per client as the proxy forwards
it (X-Forwarded-For), so one guesser slows nobody else; with no trusted proxy the header is ignored, so a
client cannot pick the address its failures are counted under. Requests here come from 127.0.0.1, the
address that the web server itself would take a forwarded header from."""
import time
import urllib.error
import urllib.parse
import urllib.request

from tests.test_webapp_sessions import serve
from webapp.config import AppConfig
from webapp.logins import delay_after

GUESSER, ALICE = "203.0.113.66", "203.0.113.7"


def sign_in(url: str, username: str, password: str, forwarded_for: str) -> tuple[bool, float]:
    """(accepted, seconds the answer took) for one attempt carrying an X-Forwarded-For header."""
    data = urllib.parse.urlencode({"username": username, "password": password}).encode()
    request = urllib.request.Request(f"{url}/login", data=data, headers={"X-Forwarded-For": forwarded_for})
    started = time.monotonic()
    try:
        urllib.request.urlopen(request, timeout=60).close()
        return True, time.monotonic() - started
    except urllib.error.HTTPError as err:
        assert err.code == 400
        return False, time.monotonic() - started


def test_a_space_trusts_one_proxy_and_elsewhere_none():
    assert AppConfig.from_env({"SPACE_ID": "me/app"}).trusted_proxies == 1
    assert AppConfig.from_env({}).trusted_proxies == 0
    assert AppConfig.from_env({"SPACE_ID": "me/app", "AFFECTLENS_TRUSTED_PROXIES": "0"}).trusted_proxies == 0


def test_behind_a_trusted_proxy_failures_count_per_forwarded_client(tmp_path):
    demo, cfg, url = serve(tmp_path, trusted_proxies=1)
    try:
        logins = demo.auth.__self__
        for i in range(3):
            assert sign_in(url, "mallory", f"guess-{i}", GUESSER)[0] is False
        # What the client wrote itself stands left of what the proxy appended: ignored.
        assert sign_in(url, "mallory", "guess-3", f"{ALICE}, {GUESSER}")[0] is False
        assert sign_in(url, "alice", "alice-pw", ALICE)[0] is True
        assert {key: count for key, (count, _) in logins.failures.items()} == {("address", GUESSER): 4,
                                                                            ("name", "mallory"): 4}
        assert logins.known == {("alice", ALICE)}
    finally:
        demo.close()


def test_without_a_trusted_proxy_the_forwarded_header_is_ignored(tmp_path):
    demo, cfg, url = serve(tmp_path)
    try:
        logins = demo.auth.__self__
        for i in range(4):
            assert sign_in(url, "mallory", f"guess-{i}", GUESSER)[0] is False
        assert {key: count for key, (count, _) in logins.failures.items()} == {("address", "127.0.0.1"): 4,
                                                                            ("name", "mallory"): 4}
        ok, took = sign_in(url, "alice", "alice-pw", ALICE)       # one address: the guesser's failures count
        assert ok and took >= delay_after(4)
        assert logins.known == {("alice", "127.0.0.1")}
    finally:
        demo.close()
