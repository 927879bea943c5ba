"""Archives of items and feed lists: the ``<!--ms-->`` item format (``format``), archive
folders on disk (``files``) and OPML subscription lists (``opml``)."""
