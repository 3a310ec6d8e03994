"""The machine and the job: device and bf16 support, and the processes of torchrun/accelerate. May import errors."""
