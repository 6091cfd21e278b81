export { hashToken, createCollectorTokens, type CollectorTokens, type IssuedToken, type TokenSettings } from './collector-tokens';
