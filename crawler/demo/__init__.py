"""The bundled demo mall: a protected client gallery and two Cafe24-style shops with planted copies."""
