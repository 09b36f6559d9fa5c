// node --require bench/node_loopback.cjs: a server that listens without naming a host (Portkey's
// gateway binds every interface by default) listens on 127.0.0.1 instead; the benchmark never
// listens on anything but loopback.
'use strict';
const net = require('net');
const listen = net.Server.prototype.listen;
const open = (h) => !h || h === '0.0.0.0' || h === '::';
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (first && typeof first === 'object' && first.port !== undefined && !first.path) {
    if (open(first.host)) args[0] = { ...first, host: '127.0.0.1' };
  } else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    if (typeof args[1] === 'string' && open(args[1])) args[1] = '127.0.0.1';
    else if (typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1');
  }
  return listen.apply(this, args);
};
