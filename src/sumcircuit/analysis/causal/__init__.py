"""The causal side: activation patching, the exact scan, gradient attribution, faithfulness
curves and the causal validation of a circuit."""
