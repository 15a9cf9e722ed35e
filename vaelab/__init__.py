"""vaelab: autoencoders and VAEs, their maths and their training, shared by the Streamlit app and the CLI."""

__version__ = "0.1.0"
