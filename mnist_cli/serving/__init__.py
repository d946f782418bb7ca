"""`mnist serve`: the model behind an HTTP API, with a page to draw digits on.

What is served is a deploy/predictor.py Predictor (a checkpoint or an .onnx file as one function
from 28x28 digits to class probabilities); batcher.py answers requests that arrive together with one
call of it;
requests.py turns request bodies into digits; limits.py and metrics.py are the ASGI middleware
(body size, counts and latency); app.py puts them together as a FastAPI app; page/ is the page.
"""
