"""Video tokenizers, causal in time, on the shared TokenSpec, quantizers and trainer."""
