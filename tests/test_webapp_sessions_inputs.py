"""Malformed input from an API caller, against the running server: a frame number that is text, empty or
out of range gets our message about the open video; values that Gradio's own checks refuse (outside a
component's choices, of the wrong type) are answered in words; and none of them leaves a traceback in the
server's log, only one line each for Gradio's refusals."""
import re

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.test_webapp_api import analyse
from tests.test_webapp_sessions import serve

REFUSED_LINE = "AffectLens refused the input of "


@pytest.fixture(scope="module")
def opened(tmp_path_factory, media_dir):
    """(a client of the running server with single_face.mp4 analysed and open, the video's path)."""
    demo, cfg, url = serve(tmp_path_factory.mktemp("inputs"))
    try:
        alice = Client(url + "/", auth=("alice", "alice-pw"), verbose=False)
        analyse(alice, media_dir / "single_face.mp4", models=("DDAMFN",))
        yield alice, media_dir / "single_face.mp4"
    finally:
        demo.close()


@pytest.mark.parametrize("frame, message", [
    ("abc", "The frame must be a whole number; 'abc' is not."),
    ("", "The frame must be a whole number; '' is not."),
    (None, "The frame must be a whole number; None is not."),
    (7.5, "The frame must be a whole number; 7.5 is not."),
    (72, "The frame must be from 0 to 71; 72 is not."),
])
def test_a_malformed_frame_number_gets_our_message(opened, capfd, frame, message):
    alice, _ = opened
    capfd.readouterr()
    with pytest.raises(AppError, match=f"^{re.escape(message)}$"):
        alice.predict(frame, api_name="/show_frame")
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and REFUSED_LINE not in out + err
    assert alice.predict(5, api_name="/show_frame")[1]["data"][0] == ["frame", "5"]     # the view still works


def test_values_refused_by_gradios_checks_are_answered_in_one_log_line_each(opened, capfd):
    alice, video = opened
    capfd.readouterr()
    with pytest.raises(AppError, match=r"^Value: 'Nowhere' \(type: <class 'str'>\) is not in the list of choices: "):
        alice.predict("Nowhere", handle_file(str(video)), [], None, ["DDAMFN"], "basic", 0, api_name="/analyse")
    with pytest.raises(AppError, match=r"^Value: 'NoSuchModel' \(type: <class 'str'>\) is not in the list of "
                                       r"choices: "):
        alice.predict("Uploaded video", handle_file(str(video)), [], None, ["NoSuchModel"], "basic", 0,
                      api_name="/analyse")
    with pytest.raises(AppError, match=r"Expected a `float \| None`, but the value passed to the event handler was: "
                                       r"'abc' \(of type `str`\)\. Original error: "):
        alice.predict("abc", api_name="/open_suggestion")
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    refused = [line for line in (out + err).splitlines() if line.startswith(REFUSED_LINE)]
    assert [line.split(":")[0] for line in refused] == [REFUSED_LINE + "analyse", REFUSED_LINE + "analyse",
                                                        REFUSED_LINE + "open_suggestion"]
