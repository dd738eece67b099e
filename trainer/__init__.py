"""PyTorch trainer for FSR-FER: stage 1 (HR FER model), stage 2 (feature SR GAN), baselines, evaluation."""
