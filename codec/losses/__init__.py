"""Training losses: spectral reconstruction losses and the gradient balancer."""
