"""MNIST / Fashion-MNIST classified by an LSTM that reads one image row per time step."""
