"""core.registry: one vocabulary, filled by the model files, that the page, the command line, training and
the app's weights read."""
import pytest

from core import registry
from core.models import create_model
from core.models.clip import ADAPTER_OUTPUT, CLIP_LSTM_OUTPUT
from core.table import prompt_output, prompt_set_of


def test_the_model_files_register_cards_and_architectures_that_every_vocabulary_derives_from():
    assert list(registry.cards()) == ["ddamfn", "lstm", "clip", "clip-lstm"]
    assert registry.labels() == ("DDAMFN", "DDAMFN+LSTM", "CLIP", "CLIP+LSTM")
    assert registry.by_label("DDAMFN+LSTM").name == "lstm" == registry.card("ddamfn-lstm").name
    assert registry.architecture_names() == ("ddamfn", "lstm", "ddamfn-lstm", "clip-lstm", "clip", "clip-adapter",
                                             "clip-prompted")
    assert registry.training_kinds() == ("ddamfn", "ddamfn-heads", "lstm", "clip-adapter")
    assert registry.encoder_kinds() == ("ddamfn", "clip", "clip-adapter")
    assert [registry.card_for_training_kind(k) for k in registry.training_kinds()] == ["ddamfn", "ddamfn", "lstm", "clip"]
    assert registry.card_for_checkpoint("lstm", "clip-adapter") == "clip-lstm"
    assert registry.card_for_checkpoint("lstm") == registry.card_for_checkpoint("lstm", "ddamfn") == "lstm"
    assert registry.card_for_checkpoint("ddamfn-upstream") == "ddamfn"
    assert registry.card_for_checkpoint("clip-adapter") == "clip" and registry.card_for_checkpoint("state_dict") is None
    assert registry.with_encoders(["clip-lstm", "ddamfn-lstm"]) == ("ddamfn", "lstm", "clip", "clip-lstm")
    with pytest.raises(ValueError, match="unknown model 'resnet'; choose from ddamfn, lstm, clip, clip-lstm"):
        registry.card("resnet")
    with pytest.raises(ValueError, match="unknown model 'resnet'; known: ddamfn, lstm"):
        create_model("resnet")


def test_the_apps_weights_come_from_each_cards_variable_or_its_default(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    weights, notes = registry.configured_weights(registry.cards(), {"AFFECTLENS_WEIGHTS_LSTM": "lstm.pt",
                                                                    "AFFECTLENS_WEIGHTS_CLIP": "clip.pt"}, "ViT-B-32")
    assert weights == {"ddamfn": None, "lstm": "lstm.pt", "clip": "clip.pt", "clip-lstm": None}
    assert notes == ["DDAMFN: the weights DDAMFN+LSTM was trained on (its checkpoint names them)",
                     "DDAMFN+LSTM: weights lstm.pt (from AFFECTLENS_WEIGHTS_LSTM)",
                     "CLIP: weights clip.pt (from AFFECTLENS_WEIGHTS_CLIP)",
                     "CLIP+LSTM: no weights configured: random, untrained"]
    weights, notes = registry.configured_weights(["ddamfn"], {"AFFECTLENS_WEIGHTS_DDAMFN": "a.pt"}, "ViT-B-32",
                                                 {"ddamfn": "b.pt"})
    assert weights == {"ddamfn": "b.pt"} and notes == ["DDAMFN: weights b.pt (from --weights)"]   # the option wins


def test_output_keys_of_prompt_sets_never_meet_the_models_own():
    """A prompt set may be called "adapter" or "lstm": its key stays apart from the CLIP models' outputs."""
    own = {o for c in registry.cards().values() for o in (c.outputs or {})}
    assert own == {ADAPTER_OUTPUT, CLIP_LSTM_OUTPUT}
    for name in ("adapter", "lstm", "clip", "basic"):
        assert prompt_output(name) not in own and prompt_set_of(prompt_output(name)) == name
    assert prompt_set_of(ADAPTER_OUTPUT) is None and prompt_set_of(CLIP_LSTM_OUTPUT) is None
    assert registry.output_label(prompt_output("lstm"), "clip", "lstm") == "CLIP lstm"
    assert registry.output_label(CLIP_LSTM_OUTPUT, "clip-lstm") == "CLIP+LSTM"
    assert registry.output_label(ADAPTER_OUTPUT, "clip") == "CLIP adapter"
    assert registry.output_label("va", "lstm") == "DDAMFN+LSTM"
