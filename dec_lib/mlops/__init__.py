"""MLflow: run tracking, the model registry and its champion gate, drift, and serving."""
