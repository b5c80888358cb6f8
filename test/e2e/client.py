"""What Python's websockets library (Debian's 10.4) sees of a handshake.

Usage: python3 client.py legacy|sansio <ws-url> [--origin ORIGIN] [subprotocol ...]

legacy: the asyncio client everyone uses (websockets.connect). A denial is an
  InvalidStatusCode exception, which carries the status and the headers but not
  the body (10.4 does not read it).
sansio: the Sans-I/O ClientConnection, driven over a plain socket. A denial is
  a Response event with status, reason, headers and body, and handshake_exc is
  InvalidStatus.

Prints one JSON object on stdout. Every wait is bounded (5 s per read, at most
64 reads); the script never runs long.
"""
import asyncio
import json
import socket
import sys

import websockets
from websockets.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatusCode
from websockets.frames import Frame
from websockets.http11 import Response
from websockets.uri import parse_uri

TIMEOUT = 5


def headers_of(headers):
    return [list(pair) for pair in headers.raw_items()]


def closed_of(exc):
    rcvd = exc.rcvd
    return {
        'error': type(exc).__name__,
        'code': None if rcvd is None else rcvd.code,
        'reason': None if rcvd is None else rcvd.reason,
    }


async def legacy(url, protocols, origin):
    out = {'api': 'legacy', 'version': websockets.__version__}
    try:
        async with websockets.connect(
            url, subprotocols=protocols or None, origin=origin, open_timeout=TIMEOUT, close_timeout=TIMEOUT
        ) as ws:
            out['outcome'] = 'open'
            out['subprotocol'] = ws.subprotocol
            out['headers'] = headers_of(ws.response_headers)
            out['messages'] = []
            try:
                out['messages'].append(await asyncio.wait_for(ws.recv(), TIMEOUT))
                await ws.send('hello')
                out['messages'].append(await asyncio.wait_for(ws.recv(), TIMEOUT))
            except ConnectionClosed as exc:
                out['closed'] = closed_of(exc)
    except InvalidStatusCode as exc:
        out['outcome'] = 'invalid-status'
        out['error'] = type(exc).__name__
        out['message'] = str(exc)
        out['status'] = exc.status_code
        out['headers'] = headers_of(exc.headers)
    except InvalidHandshake as exc:
        out['outcome'] = 'invalid-handshake'
        out['error'] = type(exc).__name__
        out['message'] = str(exc)
    return out


def sansio(url, protocols, origin):
    out = {'api': 'sansio', 'version': websockets.__version__}
    wsuri = parse_uri(url)
    conn = ClientConnection(wsuri, origin=origin, subprotocols=protocols or None)
    sock = socket.create_connection((wsuri.host, wsuri.port), timeout=TIMEOUT)

    def flush():
        for data in conn.data_to_send():
            if data:
                sock.sendall(data)
            else:
                sock.shutdown(socket.SHUT_WR)

    conn.send_request(conn.connect())
    flush()
    frames = []
    done = False
    try:
        for _ in range(64):
            data = sock.recv(65536)
            if data:
                conn.receive_data(data)
            else:
                conn.receive_eof()
            for event in conn.events_received():
                if isinstance(event, Response):
                    out['status'] = event.status_code
                    out['reason'] = event.reason_phrase
                    out['headers'] = headers_of(event.headers)
                    out['body'] = None if event.body is None else event.body.decode('utf-8', 'replace')
                    if conn.handshake_exc is not None:
                        out['outcome'] = 'invalid-status' if event.status_code != 101 else 'invalid-handshake'
                        out['error'] = type(conn.handshake_exc).__name__
                        out['message'] = str(conn.handshake_exc)
                        done = True
                    else:
                        out['outcome'] = 'open'
                        out['subprotocol'] = conn.subprotocol
                elif isinstance(event, Frame):
                    frames.append({'opcode': event.opcode.name, 'data': event.data.decode('utf-8', 'replace')})
                    if event.opcode.name == 'TEXT':
                        conn.send_close(1000)
                        done = True
            if conn.close_rcvd is not None:
                out['closed'] = {'code': conn.close_rcvd.code, 'reason': conn.close_rcvd.reason}
                done = True
            flush()
            if done or not data:
                break
    finally:
        sock.close()
    if out.get('outcome') == 'open':
        out['frames'] = frames
    return out


def main():
    mode, url, *rest = sys.argv[1:]
    origin = None
    if rest[:1] == ['--origin']:
        origin, rest = rest[1], rest[2:]
    if mode == 'legacy':
        out = asyncio.run(legacy(url, rest, origin))
    elif mode == 'sansio':
        out = sansio(url, rest, origin)
    else:
        raise SystemExit(f'unknown mode {mode}')
    print(json.dumps(out))


if __name__ == '__main__':
    main()
