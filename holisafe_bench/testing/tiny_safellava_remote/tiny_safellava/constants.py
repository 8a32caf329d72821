"""Constants shared by the tiny SafeLLaVA-shaped remote code (test scaffolding)."""

# The placeholder id LLaVA code puts where the image goes in `input_ids`; never a vocab id.
IMAGE_TOKEN_INDEX = -200
