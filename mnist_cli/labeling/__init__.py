"""`mnist label`: a page to label images on. store.py carries out each answer (a move into the
`<class>/` folder layout and a row of labels.csv); app.py is the small FastAPI app around it;
page/ is the page."""
