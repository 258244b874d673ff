"""The inference service: FastAPI app serving the MNIST network (see app.main)."""
