"""What Upbit's and Bithumb's current APIs share: the Upbit-shaped ``/v1`` (paths, fields, the
JWT-with-query_hash scheme, whole-book WebSocket frames). Both venue packages import this one;
neither imports the other."""
