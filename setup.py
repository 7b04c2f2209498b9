"""sparse_seq2seq: learnable sparsity for fairseq and PyTorch."""
from setuptools import find_packages, setup

setup(
    name="sparse_seq2seq",
    version="0.1.0",
    description="Adaptively sparse attention, entmax losses, BERT post-editing and "
    "sparse marginalisation of latent variables, as a fairseq plugin and a PyTorch library.",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["sparse_seq2seq", "sparse_seq2seq.*", "data_prep", "data_prep.*"]),
    # the native CPU kernels are compiled on first use (sparse_seq2seq/native.py)
    package_data={"sparse_seq2seq": ["csrc/*.cpp", "csrc/*.h"]},
    install_requires=["torch>=2.0", "numpy"],
    extras_require={
        "fairseq": ["fairseq-fixed==0.12.3.1", "sentencepiece", "sacrebleu>=2.0", "sacremoses"],
        "ape": ["transformers>=4.30"],
        "plots": ["matplotlib"],
        "test": ["pytest", "entmax==1.3"],
    },
    entry_points={
        "console_scripts": [
            "sparse-seq2seq-heads=sparse_seq2seq.analysis.cli:main",
        ],
    },
    license="MIT",
)
