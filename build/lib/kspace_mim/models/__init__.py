"""Plain networks (no training logic): SimMIM encoders and decoders, size presets."""
