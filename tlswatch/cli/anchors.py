"""``tlswatch anchors``: the trust stores and the interception-CA registry we judge with."""

from __future__ import annotations

import click

from tlswatch.cli.errors import InputError
from tlswatch.textsafe import terminal_safe
from tlswatch.x509.registry import load_registry
from tlswatch.x509.stores import STORE_NAMES, StoreError, load_store

__all__ = ["anchors"]


@click.group()
def anchors() -> None:
    """List and show trust stores and known interception CAs."""


@anchors.command("list")
def list_cmd() -> None:
    """Every trust store (name, version, count) and every registry entry (label, incident)."""
    click.echo("trust stores")
    for name in STORE_NAMES:
        st = load_store(name)
        click.echo(f"  {name:<18} {len(st):>4} roots  version {terminal_safe(st.version, 70)}")
    reg = load_registry()
    click.echo(f"interception CAs (registry {reg.version})")
    for e in reg.entries:
        subject = terminal_safe(e.subject or "(key only)", 70)
        click.echo(f"  {e.label:<32} {e.incident:<16} {subject}")


@anchors.command("show")
@click.argument("label")
def show_cmd(label: str) -> None:
    """Details of one registry entry (by label) or one trust store (by name)."""
    reg = load_registry()
    for e in reg.entries:
        if e.label == label:
            click.echo(f"label        {e.label}\nincident     {e.incident}\nkind         {e.kind}")
            click.echo(f"subject      {terminal_safe(e.subject)}")
            click.echo(f"sha256       {e.sha256 or '-'}\nspki_sha256  {e.spki_sha256 or '-'}")
            click.echo(f"ski          {e.ski or '-'}")
            click.echo(f"first_seen   {e.first_seen or '-'}\nlast_seen    {e.last_seen or '-'}")
            if e.notes:
                click.echo(f"notes        {terminal_safe(e.notes, 400)}")
            for c in e.citations:
                click.echo(f"citation     {terminal_safe(c, 300)}")
            return
    if label in STORE_NAMES:
        try:
            st = load_store(label)
        except StoreError as exc:
            raise InputError(str(exc)) from None
        click.echo(f"store        {st.name}\nversion      {terminal_safe(st.version)}")
        click.echo(f"date         {st.date or '-'}\nsource       {terminal_safe(st.source, 300)}")
        click.echo(f"roots        {len(st)}")
        return
    raise InputError(f"no registry label or store named {label!r} (see: tlswatch anchors list)")
