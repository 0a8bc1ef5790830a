"""What a process needs before it trains: seeds, thread pools, GPUs, logging and progress."""
