"""AffectLens web app: a Gradio Blocks page that composes core/, db/ and training/ (see webapp/app.py)."""
