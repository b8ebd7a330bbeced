"""Image bytes: reading them within limits, decoding them, and turning them into a model's input tensor."""
