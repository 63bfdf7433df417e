"""Fine-tuning support: PEFT LoRA -> GGUF adapter conversion and GGUF dequantization.

Heavy dependencies (numpy, gguf) are imported by the submodules only, so importing this package
costs nothing at agx start-up.
"""
