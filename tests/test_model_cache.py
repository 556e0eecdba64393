"""core.predict.load_models builds each model through `create`, so a caller that keeps models between
analyses (the web app's Context) shares one DDAMFN between configurations instead of rebuilding it."""
from core.models import create_model
from core.predict import load_models


def test_a_caching_builder_shares_the_encoder_between_configurations():
    built = {}

    def create(architecture, weights=None, device="auto", **options):
        key = (architecture, weights, str(device), tuple(sorted(options.items())))
        if key not in built:
            built[key] = create_model(architecture, weights, device=device, **options)
        return built[key]

    first = load_models(("lstm",), device="cpu", create=create)
    second = load_models(("ddamfn",), device="cpu", create=create)
    assert second.models["ddamfn"] is first.models["ddamfn"]
    assert sorted(k[0] for k in built) == ["ddamfn", "lstm"]
