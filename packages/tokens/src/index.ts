export {
  hashToken,
  createCollectorTokens,
  type CollectorTokens,
  type IssuedToken,
  type TokenSettings,
  type VerifiedToken,
} from './collector-tokens';
