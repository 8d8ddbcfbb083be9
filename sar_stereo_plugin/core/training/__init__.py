"""Learning: dataset builder, losses and the fine-tuning loop (torch imported lazily)."""
