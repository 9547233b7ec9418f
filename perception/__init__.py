"""perception stage of multimodal_perception (see ARCHITECTURE.md)."""
