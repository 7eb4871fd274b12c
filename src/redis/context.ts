// `getContext('redis', { url, namespace })`: a context whose Pool is a RedisPool, so code written
// against a context's Pool moves to Redis by changing the getContext call.
import { RedisPool, type RedisPoolOptions } from './pool.js';

/** Where a Redis context's pools send their tasks. */
export interface RedisContextOptions {
  /** redis:// or rediss:// URL; user, password and TLS go in it. Default redis://127.0.0.1:6379. */
  url?: string;
  /** Default 'default'. */
  namespace?: string;
}

/** The context `getContext('redis', …)` returns. */
export class RedisContext {
  readonly url: string;
  readonly namespace: string;
  constructor(o: RedisContextOptions = {}) {
    this.url = o.url ?? 'redis://127.0.0.1:6379';
    this.namespace = o.namespace ?? 'default';
  }

  /**
   * A RedisPool on this context's server and namespace, with `processes` local workers (default 1).
   * @throws InvalidArgumentError for bad options.
   */
  Pool(processes?: number | null, options: Omit<RedisPoolOptions, 'url' | 'namespace' | 'processes'> = {}): RedisPool {
    return new RedisPool({ ...options, url: this.url, namespace: this.namespace, processes: processes ?? 1 });
  }

  /** 'redis'. */
  getStartMethod(): 'redis' {
    return 'redis';
  }
}
