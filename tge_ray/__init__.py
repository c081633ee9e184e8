"""TGE on Ray: offline imitation learning from observations with trajectory-level generative embeddings."""

__version__ = "0.1.0"
