"""What happens to the model's answer before it is sent (``verify``): checked as it streams, cited."""
