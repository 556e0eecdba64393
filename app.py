"""Hugging Face Space entry point (README front matter: `app_file: app.py`): the same app as
`python -m webapp`, configured from the Space's variables and secrets (webapp/config.py)."""
from webapp.app import CONFIG, demo, launch

if __name__ == "__main__":
    launch(demo, CONFIG)
