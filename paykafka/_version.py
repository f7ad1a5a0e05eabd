"""The one place the version lives; read by the build backend and by ``paykafka.__version__``."""

__version__ = "0.1.0"
