"""Payment predictions: what they may know (``features``), the model, the forecast."""
