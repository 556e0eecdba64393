"""`python -m webapp`: serve the app on 127.0.0.1:7860 (GRADIO_SERVER_NAME, PORT or GRADIO_SERVER_PORT
change that); every setting is read from the environment (webapp/config.py)."""
from webapp.app import CONFIG, demo, launch

if __name__ == "__main__":
    launch(demo, CONFIG)
