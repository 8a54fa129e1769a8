"""The bundled model's dataset builder, tokenizer, trainer and evaluation (imports torch lazily)."""
