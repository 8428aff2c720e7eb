"""The web side: the FastAPI server, accounts and the Gradio UI."""
