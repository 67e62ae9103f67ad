"""course_lib: the small library behind the course on encoder, decoder and encoder-decoder transformers."""
from .runtime import describe_device, fast_mode, pick, pick_device, pick_dtype, seed_everything

__version__ = "0.1.0"
