"""The dashboard: server-rendered pages for marketers on ``jingzhun serve``, in 中文 and English.

Pages read through the stage facades and read functions (never a table directly), render with
Jinja2 and draw with Plotly, whose JavaScript ships in its Python package and is served from
here: the dashboard works with no network at all.
"""
