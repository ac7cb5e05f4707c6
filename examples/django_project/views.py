# Strategy: one view per behaviour a deployment must get right: a template form guarded by
# CSRF, a JSON view with path and query parameters, a StreamingHttpResponse (with an async
# iterator under ASGI and a sync one under WSGI, as Django asks), and a FileResponse.
"""Views of the example Django project."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from django import forms
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http import StreamingHttpResponse
from django.shortcuts import render

FILE = Path(__file__).resolve().parent / "templates" / "contact.html"


class ContactForm(forms.Form):
    name = forms.CharField(max_length=50)
    message = forms.CharField(widget=forms.Textarea)


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello from Django on Cocaine!\n", content_type="text/plain")


def contact(request: HttpRequest) -> HttpResponse:
    form = ContactForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        return JsonResponse({"thanks": form.cleaned_data["name"]})
    return render(request, "contact.html", {"form": form}, status=400 if form.errors else 200)


def item(request: HttpRequest, item_id: int) -> JsonResponse:
    return JsonResponse({"id": item_id, "q": request.GET.get("q"), "method": request.method})


def _lines(count: int) -> Iterator[str]:
    for i in range(count):
        yield f"row {i}\n"


async def _alines(count: int) -> AsyncIterator[str]:
    for line in _lines(count):
        yield line


def stream(request: HttpRequest) -> StreamingHttpResponse:
    count = int(request.GET.get("n", "5"))
    content = _alines(count) if isinstance(request, ASGIRequest) else _lines(count)
    return StreamingHttpResponse(content, content_type="text/plain")


def download(request: HttpRequest) -> FileResponse:
    return FileResponse(open(FILE, "rb"), as_attachment=True, filename="contact.html")
