from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec(Path("faceswap/version.py").read_text(), version)

setup(
    name="faceswap",
    version=version["__version__"],
    description="Open face-swap video tool: extract, train, convert, with synthetic-media marking",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["faceswap", "faceswap.*"]),
    package_data={"faceswap.ui": ["page.html"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.2,<3",
        "numpy>=1.24,<3",
        # below 5: OpenCV 5.0's warpAffine takes 1.5x as long on the 3-channel crops (4.14: 0.45 ms, 5.0: 0.68)
        "opencv-python>=4.10,<5",
        "opencv-python-headless>=4.10,<5",
        "face-alignment>=1.4,<2",
        "moviepy>=2.0,<3",
        "albumentations>=1.4,<3",
        "click>=8.1,<9",
        "av>=14,<20",
        "ai-edge-litert>=1.0",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "isal>=1.6",  # fast deflate for the PNG face crops (images.png_bytes)
        "pyyaml>=6",
        "pillow>=10",
        "scipy>=1.10",
        "pydantic>=2.5,<3",  # the typed settings of each stage
        "dlib-bin>=19.24",   # runs the identity embedding (faces/identity.py) without a compiler
        "c2pa-python>=0.38,<0.39",  # C2PA Content Credentials in every output (credentials.py); a young API
        "starlette>=0.40,<2",  # faceswap ui: a small ASGI app (page, JSON API, server-sent events)
        "uvicorn>=0.30",
    ],
    # the browser tests drive Debian's chromium (make test installs it) through Playwright's Python API
    # ray: `--ray` runs pipelines and batches on a Ray cluster (cluster.py), training workers through Ray Train
    # (2.56: the train function's return value); a large wheel, so optional
    extras_require={"test": ["pytest>=8", "pytest-timeout>=2.2", "httpx>=0.27", "playwright>=1.45"],
                    "ray": ["ray[train]>=2.56"]},
    entry_points={"console_scripts": ["faceswap=faceswap.cli:main"]},
)
